"""``streethub persons``: the master resident index's review queue and its corrections.

``review`` lists the ambiguous fallback candidates (evidence masked); ``merge`` and
``split`` record a data officer's decision in ``curated.link_actions`` and relink, so the
decision is replayed on every rebuild. Each command is written to the audit log.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from catalog.settings import get_settings
from pipelines.cli_common import catalogue, cli_actor, console, err, reading_lake, writing_lake

persons_app = typer.Typer(help="The master resident index: review queue, merge, split.")
SHOWN = 50  # review items printed unless --all

MentionOption = Annotated[
    str | None,
    typer.Option("--mention", help="one mention: <dept>.<dataset>:<key pseudonym>"),
]
ReasonOption = Annotated[str, typer.Option("--reason", help="why (kept with the action)")]


def _mention(text: str | None) -> tuple[str, str, str] | None:
    if text is None:
        return None
    ref, sep, key = text.partition(":")
    dept, dot, dataset = ref.partition(".")
    if not (sep and dot and dept and dataset and key):
        err.print("a mention is <dept>.<dataset>:<key pseudonym>")
        raise typer.Exit(2)
    return dept, dataset, key


def _protection(settings, actor: str):
    from pipelines.protection import Protection

    return Protection.from_settings(settings, actor)


@persons_app.command("review")
def persons_review(
    everything: Annotated[bool, typer.Option("--all", help="every open item")] = False,
) -> None:
    """List the open review items: a mention, a candidate person, the score, what agrees
    (names and mobiles masked)."""
    from curated.review import review_queue

    settings = get_settings()
    actor = cli_actor()
    with reading_lake(settings, "reading the review queue") as con:
        queue = review_queue(con)
    _protection(settings, actor).audit.append(
        "person_review_list", actor, purpose="master_index", items=queue.height
    )
    if queue.height == 0:
        console.print("no open review items")
        return
    table = Table(title=f"person review queue: {queue.height:,} open item(s)")
    for col in ("mention", "person", "candidate", "p", "agrees", "name", "mobile", "cand. name"):
        # ids fold rather than shorten: a data officer copies them into merge / split
        table.add_column(col, justify="right" if col == "p" else "left", overflow="fold")
    for r in queue.head(queue.height if everything else SHOWN).iter_rows(named=True):
        table.add_row(
            Text(f"{r['dept']}.{r['dataset']}:{r['key_pid']}"),
            r["person_id"],
            r["candidate_person_id"],
            f"{r['match_probability']:.3f}",
            r["agrees_on"] or "-",
            r["name_masked"] or "-",
            r["mobile_masked"] or "-",
            r["candidate_name_masked"] or "-",
        )
    console.print(table)


@persons_app.command("merge")
def persons_merge(
    into: Annotated[str, typer.Argument(help="the person kept (person id)")],
    reason: ReasonOption,
    person: Annotated[
        str | None, typer.Option("--person", help="fold this person's mentions in")
    ] = None,
    mention: MentionOption = None,
) -> None:
    """Merge a person, or one mention (a review candidate accepted), into INTO."""
    from curated.persons import merge

    _act(merge, into=into, person=person, mention=_mention(mention), reason=reason)


@persons_app.command("split")
def persons_split(
    person: Annotated[str, typer.Argument(help="the person split (person id)")],
    reason: ReasonOption,
    restore: Annotated[
        str | None,
        typer.Option("--restore", help="give back the mentions merged in from this person"),
    ] = None,
    mention: MentionOption = None,
) -> None:
    """Undo a merge (--restore) or detach one mention into a person of its own."""
    from curated.persons import split

    _act(split, person=person, restore=restore, mention=_mention(mention), reason=reason)


def _act(fn, **kwargs) -> None:
    """Record the decision and relink; then what reads the index follows it (households,
    golden records, the re-collection figure, events: ``curated_run.follow_index``)."""
    from catalog.street import get_street
    from pipelines.curated_run import follow_index

    settings = get_settings()
    actor = cli_actor()
    cat = catalogue(None)
    with writing_lake(settings, "relinking") as con:
        protection = _protection(settings, actor)
        action_id = fn(con, cat, protection, actor=actor, **kwargs)
        follow_index(con, cat, protection, get_street(settings.street_file))
    console.print(f"recorded {fn.__name__} {action_id}; the index is relinked, downstream follows")
