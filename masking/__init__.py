"""streethub masking: keys, encryption at rest, audit, pseudonyms, display masks,
generalisation, k-anonymity, free-text scrubbing and the leak scanner.

Plain functions over polars frames; imports only ``catalog``. Import the submodules
(``masking.keys``, ``masking.crypto`` …) directly; this package imports nothing heavy.
"""
