"""Inhibition: while one alert fires, the alerts it explains are recorded but not sent.

- A firing `hedge_decoupling` alert on a hedge mutes `hedge_ratio_drift` and
  `hedge_effectiveness` on the same hedge (a hedge that stopped hedging also drifts and loses
  effectiveness: one page says it).
- A firing `data_staleness` alert on an instrument mutes every metric rule (hedge and basket
  kinds) on the hedges and baskets that contain it (their numbers are computed from stale data).

A muted event gets `context["muted_by"] = "RULE/SUBJECT"` (the inhibiting alert); the state
machine is not touched, so the muted alert still resolves, escalates and counts episodes as it
would have. A resolve (or repeat, escalation) of an episode whose firing was muted is muted too,
so no one receives the end of an alert they never saw.

Pure: events, rules and the firing state at the start are arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .rules import KINDS, Rule
from .state import AlertEvent

MUTED_BY_DECOUPLING = frozenset({"hedge_ratio_drift", "hedge_effectiveness"})
Firing = dict[tuple[str, str], str]  # (rule kind, subject) -> "RULE/SUBJECT" of the inhibitor


def inhibit(
    events: Sequence[AlertEvent],
    rules: Mapping[str, Rule],
    contains: Mapping[str, Iterable[str]],
    *,
    firing: Iterable[tuple[str, str]] = (),
    muted_episodes: Iterable[tuple[str, str, int]] = (),
) -> list[AlertEvent]:
    """Mark the events (in time order) that an inhibiting alert mutes; returns the muted ones.

    `contains` maps each hedge and basket to its instruments. `firing` lists the (rule, subject)
    pairs already firing before the first event; `muted_episodes` the (rule, subject, episode)
    whose firing was muted earlier. Within one hour an inhibitor's events count first.
    """
    active: Firing = {}

    def note(rule_name: str, subject: str) -> None:
        rule = rules.get(rule_name)
        if rule is not None and rule.kind in ("hedge_decoupling", "data_staleness"):
            active[(rule.kind, subject)] = f"{rule_name}/{subject}"

    for rule_name, subject in firing:
        note(rule_name, subject)
    muted_eps = set(muted_episodes)
    muted: list[AlertEvent] = []
    inhibitors = ("hedge_decoupling", "data_staleness")

    def order(event: AlertEvent) -> tuple[object, ...]:
        rule = rules.get(event.rule)
        first = rule is not None and rule.kind in inhibitors
        return (event.ts, not first)

    for event in sorted(events, key=order):
        rule = rules.get(event.rule)
        if rule is None:
            continue
        if rule.kind in inhibitors:
            if event.kind == "resolved":
                active.pop((rule.kind, event.subject), None)
            else:
                note(event.rule, event.subject)
        by = _muted_by(rule, event.subject, active, contains)
        episode = (event.rule, event.subject, event.episode)
        if by is None and event.kind != "firing" and episode in muted_eps:
            by = "an earlier muted firing"
        if by is not None:
            event.context["muted_by"] = by
            muted.append(event)
            if event.kind == "firing":
                muted_eps.add(episode)
    return muted


def _muted_by(
    rule: Rule,
    subject: str,
    active: Firing,
    contains: Mapping[str, Iterable[str]],
) -> str | None:
    if rule.kind in MUTED_BY_DECOUPLING:
        by = active.get(("hedge_decoupling", subject))
        if by is not None:
            return by
    if KINDS[rule.kind].source in ("hedge", "basket"):
        for instrument in contains.get(subject, ()):
            by = active.get(("data_staleness", instrument))
            if by is not None:
                return by
    return None


def holdings(
    hedges: Iterable[tuple[str, Iterable[str]]], baskets: Iterable[tuple[str, Iterable[str]]]
) -> dict[str, list[str]]:
    """Each hedge's and basket's instruments, for `inhibit`'s `contains`."""
    return {name: list(members) for name, members in [*hedges, *baskets]}
