"""class_jax.corpus: Wikipedia dumps -> clean text with links -> 100-word passages, plus the cross-language entities.

Modules, in data-flow order:
  dump_reader        streaming MediaWiki `pages-articles` XML (bz2 / gzip / plain, any declared encoding)
  wiki_languages     per-language namespaces, interwiki prefixes, page-kind markers
  titles             title normalisation, namespace / prefix classification, redirects
  wikitext_tree      a lean parse tree over mwparserfromhell's tokenizer
  text_offsets       whitespace / residue normalisation that keeps character spans
  wikitext_cleaner   wikitext -> clean text with exact link spans
  types              Article, Link, Passage: the records ingestion hands to mining
  passages           articles -> 100-word passages (DPR "w100") that keep their links
  page_processing    one page: wikitext -> Article + passages (in process or in a worker pool)
  sentences          language-aware sentence splitting with character spans
  language_scripts   the Unicode scripts of each language and script-aware text measures
  langlinks          `langlinks.sql(.gz)` reader
  wikidata           Wikidata entity JSON -> sitelinks
  entities           the entity table: entity id -> {language: title}
  corpus_io          the on-disk corpus format (gzip JSONL shards, TSV tables), written atomically
  ingest             one language's dump -> corpus directory (resumable)
  ingest_links       langlinks / Wikidata -> entity table
  import_corpus      a published passage file (DPR / CORA .tsv) -> passages of a corpus directory (resumable)
"""
