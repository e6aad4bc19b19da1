"""Save and load a fitted generator with its TableEncoder: DP outputs only, no training row.

A generator trained under DP-SGD, and an encoder whose every data-dependent fact came from a DP
mechanism or the policy, may be shared: anything computed from them is post-processing. What is
written to the folder:

* ``model.json``: format tag, backend name and constructor arguments (public), slot widths,
  DP outputs the backend samples with (the GAN's noisy condition frequencies), the encoder's
  columns (public schema, categories, bin edges, the DP-noised in-bin histogram) and the charges
  the model cost (their recorded accountant inputs).
* ``weights.pt``: ``torch.save`` of a flat ``{name: tensor}`` dict (the sampling network's
  state_dict, on the CPU). It is loaded with ``torch.load(weights_only=True)``, which refuses
  pickled code.

Nothing else is stored: no codes, no rows, no raw counts, no random seeds, no optimizer state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter

from privsynth.data.schema import ColumnSchema
from privsynth.encoding.categorical import CategoricalEncoder
from privsynth.encoding.numeric import NumericEncoder
from privsynth.encoding.table_encoder import TableEncoder
from privsynth.errors import PrivacyError
from privsynth.generators.base import Generator
from privsynth.policy.relations import Relation
from privsynth.privacy.events import Charge

FORMAT = "privsynth-generator/1"
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"


def save_generator(generator: Generator, encoder: TableEncoder, folder: str | Path) -> Path:
    """Write a fitted generator and its encoder to ``folder`` (created if absent)."""
    if not hasattr(generator, "module_"):
        raise PrivacyError("only a fitted generator can be saved; call fit first")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone()
             for k, v in generator.module_.state_dict().items()}
    config: dict[str, Any] = {
        "format": FORMAT,
        "backend": generator.name,
        "params": _params(generator),
        "widths": [int(w) for w in generator.widths_],
        "fitted": _fitted_outputs(generator),
        "encoder": [_encoder_to_dict(e) for e in encoder.encoders],
        "relations": [r.model_dump(mode="json", by_alias=True) for r in encoder.relations],
        "charges": [c.to_dict() for c in getattr(generator, "charges_", [])],
        "max_rows_per_person": getattr(encoder, "max_rows", None),  # unit: person
        "fixed_per_person": list(getattr(encoder, "fixed", ())),
        "order_by_per_person": getattr(encoder, "order_by", None),
        # derived columns are computed at decode, not modelled (absent: an older model had them)
        "derived_modelled": bool(getattr(encoder, "base", encoder).model_derived),
    }
    torch.save(state, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True))
    return out


def load_generator(folder: str | Path, *, device: str | torch.device = "cpu"
                   ) -> tuple[Generator, TableEncoder]:
    """Read what :func:`save_generator` wrote; the generator is ready to ``sample``."""
    src = Path(folder)
    config = json.loads((src / CONFIG_FILE).read_text())
    if config.get("format") != FORMAT:
        raise PrivacyError(f"{src} does not hold a saved privsynth generator ({FORMAT})")
    state = torch.load(src / WEIGHTS_FILE, map_location=device, weights_only=True)
    device = torch.device(device)
    generator = _rebuild(config, state, device)
    generator.charges_ = [Charge(**c) for c in config["charges"]]
    relations = TypeAdapter(list[Relation]).validate_python(config.get("relations", []))
    encoder = TableEncoder([_encoder_from_dict(e) for e in config["encoder"]], relations,
                           model_derived=bool(config.get("derived_modelled", True)))
    if config.get("max_rows_per_person"):
        from privsynth.encoding.person_encoder import PersonEncoder  # noqa: PLC0415

        encoder = PersonEncoder(encoder, int(config["max_rows_per_person"]),
                                tuple(config.get("fixed_per_person", ())),
                                config.get("order_by_per_person"))
    return generator, encoder


# --------------------------------------------------------------------- backends

def _params(generator: Generator) -> dict[str, Any]:
    if generator.name == "gan":
        return generator.get_params()
    if generator.name == "vae":
        return {"hidden": list(generator.hidden), "latent_dim": int(generator.latent_dim),
                "kl_weight": float(generator.kl_weight)}
    if generator.name == "person_vae":
        return {"hidden": list(generator.hidden), "latent_dim": int(generator.latent_dim),
                "kl_weight": float(generator.kl_weight), "max_rows": generator.max_rows,
                "n_fixed": generator.n_fixed}
    raise PrivacyError(f"no saver for backend {generator.name!r}")


def _fitted_outputs(generator: Generator) -> dict[str, Any]:
    """DP outputs besides the weights that sampling needs."""
    if generator.name == "gan":
        return {"cond_probs": [[float(x) for x in p.tolist()] for p in generator.cond_probs_]}
    return {}


def _rebuild(config: dict[str, Any], state: dict[str, torch.Tensor],
             device: torch.device) -> Generator:
    widths, params = config["widths"], config["params"]
    if config["backend"] == "vae":
        from privsynth.generators.vae import DPVAE, VAEModule  # noqa: PLC0415

        generator = DPVAE(**params)
        module = VAEModule(widths, generator.hidden, generator.latent_dim, generator.kl_weight)
        module.load_state_dict(state)
        generator.module_ = module.to(device).eval()
        generator.widths_ = list(widths)
        return generator
    if config["backend"] == "person_vae":
        from privsynth.generators.person_vae import PersonVAE  # noqa: PLC0415

        generator = PersonVAE(**params)
        module = generator._module(widths)
        module.load_state_dict(state)
        generator.module_ = module.to(device).eval()
        generator.widths_ = list(widths)
        return generator
    if config["backend"] == "gan":
        from privsynth.generators.base import block_offsets  # noqa: PLC0415
        from privsynth.generators.gan import DPGAN, ConditionalGenerator  # noqa: PLC0415

        generator = DPGAN(**params)
        module = ConditionalGenerator(sum(widths), generator.noise_dim, generator.generator_hidden)
        module.load_state_dict(state)
        generator.module_ = module.to(device).eval()
        generator.widths_ = list(widths)
        generator.device_ = device
        generator.offsets_ = torch.tensor(block_offsets(widths), device=device)
        generator.cond_probs_ = [torch.tensor(p, dtype=torch.float32)
                                 for p in config["fitted"]["cond_probs"]]
        generator._set_condition_table(device)
        return generator
    raise PrivacyError(f"unknown backend {config['backend']!r} in saved generator")


# --------------------------------------------------------------------- encoder

def _schema_to_dict(s: ColumnSchema) -> dict[str, Any]:
    return {"name": s.name, "kind": s.kind,
            "bounds": list(s.bounds) if s.bounds is not None else None,
            "domain": list(s.domain) if s.domain is not None else None,
            "bounds_source": s.bounds_source, "domain_source": s.domain_source}


def _schema_from_dict(d: dict[str, Any]) -> ColumnSchema:
    return ColumnSchema(d["name"], d["kind"],
                        bounds=tuple(d["bounds"]) if d["bounds"] is not None else None,
                        domain=tuple(d["domain"]) if d["domain"] is not None else None,
                        bounds_source=d["bounds_source"], domain_source=d["domain_source"])


def _encoder_to_dict(e: CategoricalEncoder | NumericEncoder) -> dict[str, Any]:
    if isinstance(e, CategoricalEncoder):
        return {"type": "categorical", "schema": _schema_to_dict(e.schema),
                "categories": list(e.categories), "complete": e.complete}
    return {"type": "numeric", "schema": _schema_to_dict(e.schema),
            "edges": [float(x) for x in e.edges], "grid": [float(x) for x in e.grid],
            "grid_mass": [int(x) for x in e.grid_mass],
            "point_masses": [float(x) for x in e.point_masses], "transform": e.transform,
            "transform_scale": float(e.transform_scale), "complete": e.complete,
            "decimals": e.decimals}


def _encoder_from_dict(d: dict[str, Any]) -> CategoricalEncoder | NumericEncoder:
    schema = _schema_from_dict(d["schema"])
    if d["type"] == "categorical":
        return CategoricalEncoder(schema, tuple(d["categories"]), bool(d.get("complete", False)))
    return NumericEncoder(schema, np.array(d["edges"]), np.array(d["grid"]),
                          np.array(d["grid_mass"], dtype=np.int64),
                          point_masses=tuple(float(x) for x in d.get("point_masses", ())),
                          transform=str(d.get("transform", "linear")),
                          transform_scale=float(d.get("transform_scale", 1.0)),
                          complete=bool(d.get("complete", False)),
                          decimals=d.get("decimals"))
