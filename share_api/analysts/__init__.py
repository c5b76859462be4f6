"""Analysts (分析人员): SQL notebooks over masked data, with no way around the masks.

- :mod:`share_api.analysts.build` — an analyst organisation's database: a DuckDB file
  holding copies of what its live grants on published marts show (each through its
  grant's view: masking, the analyst's own pseudonym key, residents' opt-outs), with the
  catalogue's comments, and nothing else; rebuilt only when what it shows changed.
- :mod:`share_api.analysts.lock` — opening such a file read-only with external access off
  and the configuration locked, so DuckDB itself refuses files, ATTACH, COPY, INSTALL, SET.
"""
