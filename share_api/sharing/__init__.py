"""Delta Sharing: every live grant readable over the open protocol by pandas, Spark and BI
tools, in the share service's process, with its sign-in rules and its audit log.

- **share** = the recipient organisation, **schema** = the owner department of the granted
  resource, **table** = one live grant;
- :mod:`.versions` — a grant's table versions: a new one whenever the lake's table, the
  grant's terms or the consent registry's opt-outs change what the grant shows;
- :mod:`.files` — each version materialised as Parquet, masked, filtered and pseudonymised
  for its recipient, encrypted at rest under the home, reused while nothing changed,
  swept after expiry or revocation; also the share API's prepared downloads;
- :mod:`.changes` — the change feed between two versions (cdf files with ``_change_type``);
- :mod:`.hints` — ``jsonPredicateHints`` and ``limitHint`` pruning files by their stats;
- :mod:`.tokens` — profiles and their expiring bearer tokens (good for this protocol only);
- :mod:`.urls` — signed, expiring file URLs bound to recipient and file;
- :mod:`.kept` — rows the hot paths keep per process under the revision counters;
- :mod:`.protocol` and :mod:`.app` — the REST surface mounted at ``/delta-sharing``.
"""
