"""`class-jax make-demo-wiki`: writes the generated multilingual demo wiki in real dump formats."""

import argparse
import time

from class_jax.demo.world import wiki as demo_wiki
from class_jax.demo.world.language import DEFAULT_LANGUAGES
from class_jax.demo.world.facts import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the command's flags."""
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="default: a few hundred entities for the laptop demo; small: for tests")
    parser.add_argument("--seed", type=int, default=0, help="random seed (equal seeds give identical files)")
    parser.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES),
                        help="comma-separated language codes, en first")
    parser.add_argument("--ingest", metavar="CORPUS_DIR",
                        help="also ingest the generated dumps and langlinks into this corpus root")


def run(args: argparse.Namespace) -> int:
    """Generates (and optionally ingests) the demo wiki, and prints what was written.

    Raises:
      UserError: unknown size or language.
    """
    started = time.time()
    languages = tuple(code.strip() for code in args.languages.split(",") if code.strip())
    manifest = demo_wiki.make_demo_wiki(args.out, size=args.size, seed=args.seed, languages=languages)
    width = max(len(lang) for lang in manifest["languages"])
    print(f"demo wiki ({args.size}, seed {args.seed}) written to {args.out} in {time.time() - started:.1f} s")
    print(f"entities: {sum(manifest['entities']['world'].values())} "
          f"({', '.join(f'{kind} {n}' for kind, n in manifest['entities']['world'].items())})")
    for lang, counts in manifest["counts"].items():
        print(f"  {lang:<{width}}  articles {counts['articles']:>4}  redirects {counts['redirects']:>3}  "
              f"links {counts['links']:>5}  langlinks {counts['langlinks']:>5}")
    for name, per_language in manifest["questions"].items():
        print(f"  {name}: {sum(per_language.values())} questions")
    if args.ingest:
        result = demo_wiki.ingest_demo_wiki(args.out, args.ingest, progress=False)
        passages = sum(counts.get("passages", 0) for counts in result["languages"].values())
        print(f"ingested into {args.ingest}: {passages} passages, {result['entities']['entities']} entities")
    return 0
