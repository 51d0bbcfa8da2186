"""The generated demo world: an invented multilingual wiki in real dump formats, with questions whose answers are known.

Modules, in data-flow order:
  names          invented names that read naturally in every demo language and script
  facts          entities with attributes and the facts relating them (`World`)
  language       one demo language: its templates (templates/<lang>.json) and how facts are written in it
  articles       one language's pages: articles, redirects, disambiguation and list pages, other namespaces
  questions      XOR-TyDi-style question sets over the world
  dump_writer    `pages-articles` XML and `langlinks.sql` writers
  wiki           writes the whole wiki and ingests it back
  clr_pt_check   precision / recall of the CLR-PT rule against the world's known facts
"""
