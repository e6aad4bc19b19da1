"""The audit: attacks on (train = members, holdout = non-members, synthetic), with intervals.

* ``runner.run_audit`` runs the attacks the policy asks for, each isolated (own thread, timeout,
  failures recorded with reason codes) and returns an ``AuditResult``;
* ``distance``: mixed-type embedding (numbers scaled by public bounds, categories by mismatch)
  and chunked BLAS nearest-neighbour search;
* ``copies``: exact copies, unique-QI copies, DCR share, NNDR; ``membership``: distance and
  DOMIAS-style density membership inference; ``anonymeter``: singling out, linkability,
  inference through anonymeter 1.1; ``utility``: marginals, association differences, TSTR;
* ``stats``: Wilson, Clopper-Pearson, Newcombe, paired, DeLong and bootstrap intervals.

The gate (``privsynth.gate.decide``) turns an ``AuditResult`` into a decision; the report
(``privsynth.release.report``) writes it for people and machines. Submodules are imported
lazily: ``import privsynth.audit`` stays cheap.
"""
