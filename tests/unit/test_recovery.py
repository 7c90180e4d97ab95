"""`hub.recovery`: the pure all-or-nothing decision of what a returning subscriber gets."""

from __future__ import annotations

from pubsocket.brokers import HistoryPage, Position, Publication
from pubsocket.hub.recovery import merge, recover

E = "ep"


def pubs(*offsets: int, epoch: str = E) -> list[Publication]:
    return [Publication(o, epoch, f'"m{o}"'.encode()) for o in offsets]


def offsets(items: tuple[Publication, ...] | list[Publication]) -> list[int]:
    return [p.offset for p in items]


def page(*held: int, top: int, epoch: str = E) -> HistoryPage:
    return HistoryPage(pubs(*held, epoch=epoch), Position(top, epoch))


def at(offset: int, epoch: str = E) -> Position:
    return Position(offset, epoch)


# -- recovered ------------------------------------------------------------------------------


def test_recovered_with_the_missed_publications_in_order() -> None:
    result = recover(at(2), page(3, 4, 5, top=5), (), at(5))
    assert result.recovered
    assert result.position == at(2)
    assert offsets(result.replay) == [3, 4, 5]
    assert result.replay == tuple(pubs(3, 4, 5))


def test_recovered_with_nothing_missed() -> None:
    result = recover(at(5), page(top=5), (), at(5))
    assert result.recovered
    assert result.position == at(5)
    assert result.replay == ()


def test_from_zero_replays_everything_kept() -> None:
    result = recover(at(0), page(1, 2, top=2), (), at(2))
    assert result.recovered
    assert offsets(result.replay) == [1, 2]


def test_live_buffer_overlapping_the_page_gives_no_duplicate() -> None:
    live = pubs(4, 5, 6, 7)  # fanned out while the read ran; 4 and 5 are in the page too
    result = recover(at(2), page(3, 4, 5, top=5), live, at(7))
    assert result.recovered
    assert result.position == at(2)
    assert offsets(result.replay) == [3, 4, 5, 6, 7]


def test_live_buffer_entirely_inside_the_page_adds_nothing() -> None:
    result = recover(at(2), page(3, 4, 5, top=5), pubs(3, 4), at(5))
    assert result.recovered
    assert offsets(result.replay) == [3, 4, 5]


def test_the_page_copy_wins_over_the_live_copy() -> None:
    from_page = Publication(3, E, b"page")
    from_live = Publication(3, E, b"live")
    hist = HistoryPage([from_page], at(3))
    result = recover(at(2), hist, [from_live], at(3))
    assert result.recovered
    assert result.replay == (from_page,)


def test_live_of_another_epoch_is_not_replayed_on_recovery() -> None:
    live = [*pubs(6), *pubs(1, epoch="other")]
    result = recover(at(2), page(3, 4, 5, top=5), live, at(6))
    assert result.recovered
    assert offsets(result.replay) == [3, 4, 5, 6]
    assert {p.epoch for p in result.replay} == {E}


def test_page_publications_of_another_epoch_are_not_replayed() -> None:
    hist = HistoryPage([*pubs(3, epoch="other"), *pubs(3, 4)], at(4))
    result = recover(at(2), hist, (), at(4))
    assert result.recovered
    assert result.replay == tuple(pubs(3, 4))


def test_page_publications_at_or_before_since_are_not_replayed() -> None:
    result = recover(at(2), page(1, 2, 3, 4, top=4), (), at(4))
    assert result.recovered
    assert offsets(result.replay) == [3, 4]


def test_page_beyond_upto_is_not_replayed() -> None:
    # history already holds 6 and 7, but this node has fanned out only up to 5:
    # live delivery brings 6 and 7, so replaying them would duplicate them
    result = recover(at(2), page(3, 4, 5, 6, 7, top=7), (), at(5))
    assert result.recovered
    assert result.position == at(2)
    assert offsets(result.replay) == [3, 4, 5]


def test_live_beyond_upto_is_not_replayed() -> None:
    result = recover(at(2), page(3, 4, top=4), pubs(5, 6), at(5))
    assert result.recovered
    assert offsets(result.replay) == [3, 4, 5]


def test_page_beyond_upto_with_a_hole_past_upto_still_recovers() -> None:
    # only (since, upto] must be whole; what history lacks after upto does not matter
    result = recover(at(2), page(3, 4, 5, 7, top=7), (), at(5))
    assert result.recovered
    assert offsets(result.replay) == [3, 4, 5]


def test_replay_is_exactly_upto_minus_since_items() -> None:
    cases = [
        (at(0), page(1, 2, 3, top=3), (), at(3)),
        (at(2), page(3, 4, 5, 6, top=6), pubs(5, 6, 7, 8), at(8)),
        (at(2), page(3, 4, 5, 6, 7, 8, 9, top=9), pubs(4), at(6)),
        (at(4), page(top=4), pubs(5, 6), at(6)),
        (at(3), page(4, top=9), (), at(3)),
    ]
    for since, hist, live, upto in cases:
        result = recover(since, hist, live, upto)
        assert result.recovered
        assert offsets(result.replay) == list(range(since.offset + 1, upto.offset + 1))
        assert len(result.replay) == upto.offset - since.offset


def test_live_alone_satisfies_the_range_it_covers() -> None:
    # the page came back empty (everything after since was published during the read)
    result = recover(at(4), page(top=4), pubs(5, 6, 7), at(7))
    assert result.recovered
    assert result.position == at(4)
    assert offsets(result.replay) == [5, 6, 7]


def test_live_alone_not_covering_the_range_is_not_recovered() -> None:
    result = recover(at(4), page(top=4), pubs(6, 7), at(7))
    assert not result.recovered
    assert result.position == at(7)
    assert result.replay == ()


def test_live_fills_the_end_of_a_short_page() -> None:
    # the read was cut short by its limit at 4; live brought 5..6
    result = recover(at(2), page(3, 4, top=6), pubs(5, 6), at(6))
    assert result.recovered
    assert offsets(result.replay) == [3, 4, 5, 6]


# -- not recovered ----------------------------------------------------------------------------


def test_epoch_mismatch_is_not_recovered_and_replays_nothing_old() -> None:
    result = recover(at(3, "old"), page(1, 2, 3, 4, top=4), (), at(4))
    assert not result.recovered
    assert result.position == at(4)
    assert result.replay == ()


def test_epoch_mismatch_replays_nothing_even_with_live() -> None:
    result = recover(at(3, "old"), page(1, 2, top=2), pubs(2, 3, 4), at(4))
    assert not result.recovered
    assert result.position == at(4)
    assert result.replay == ()


def test_epoch_mismatch_with_matching_old_epoch_data_is_not_recovered() -> None:
    # even if the page and live hold `since`'s epoch, upto in another epoch fails
    result = recover(at(2, "old"), page(3, 4, top=4, epoch="old"), (), at(4))
    assert not result.recovered
    assert result.position == at(4)
    assert result.replay == ()


def test_truncated_history_is_not_recovered() -> None:
    # since 2, but 3 fell out of history: the first kept one is 4
    result = recover(at(2), page(4, 5, top=5), (), at(5))
    assert not result.recovered
    assert result.position == at(5)
    assert result.replay == ()


def test_expired_history_is_not_recovered() -> None:
    # nothing kept any more (TTL), but the position moved on
    result = recover(at(2), page(top=5), (), at(5))
    assert not result.recovered
    assert result.position == at(5)
    assert result.replay == ()


def test_read_cut_short_by_its_limit_is_not_recovered() -> None:
    result = recover(at(2), page(3, 4, top=6), (), at(6))
    assert not result.recovered
    assert result.position == at(6)
    assert result.replay == ()


def test_hole_inside_the_page_is_not_recovered() -> None:
    result = recover(at(2), page(3, 5, top=5), (), at(5))
    assert not result.recovered
    assert result.position == at(5)
    assert result.replay == ()


def test_hole_between_page_and_live_is_not_recovered() -> None:
    result = recover(at(2), page(3, 4, top=4), pubs(6, 7), at(7))
    assert not result.recovered
    assert result.position == at(7)
    assert result.replay == ()


def test_since_ahead_of_upto_is_not_recovered() -> None:
    result = recover(at(9), page(top=5), (), at(5))
    assert not result.recovered
    assert result.position == at(5)
    assert result.replay == ()


def test_since_ahead_of_upto_replays_nothing_even_with_live() -> None:
    result = recover(at(9), page(top=9), pubs(5, 10), at(5))
    assert not result.recovered
    assert result.position == at(5)
    assert result.replay == ()


def test_gap_during_the_read_is_not_recovered() -> None:
    # the hub's live stream had a hole while history was read: nothing can be promised;
    # the subscriber continues after the gap with what came after it
    gap = at(7)
    result = recover(at(2), page(3, 4, 5, top=5), pubs(8, 9), at(9), gap)
    assert not result.recovered
    assert result.position == gap
    assert offsets(result.replay) == [8, 9]


def test_gap_fails_even_when_page_and_live_cover_the_range() -> None:
    result = recover(at(2), page(3, 4, 5, top=5), pubs(6, 7), at(7), at(5))
    assert not result.recovered
    assert result.position == at(5)
    assert offsets(result.replay) == [6, 7]


def test_gap_hands_over_only_live_after_it_in_its_epoch() -> None:
    live = [*pubs(4, 6), *pubs(1, epoch="other")]
    result = recover(at(2), page(3, 4, 5, 6, top=6), live, at(6), at(5))
    assert not result.recovered
    assert result.position == at(5)
    assert offsets(result.replay) == [6]
    assert {p.epoch for p in result.replay} == {E}


def test_gap_with_nothing_live_after_it_replays_nothing() -> None:
    result = recover(at(2), page(3, 4, top=4), (), at(6), at(6))
    assert not result.recovered
    assert result.position == at(6)
    assert result.replay == ()


def test_failure_position_is_upto() -> None:
    cases = [
        (at(2), page(4, 5, top=5), (), at(6)),  # truncated
        (at(2), page(top=8), (), at(6)),  # expired, page top past upto
        (at(2, "x"), page(3, top=3), (), at(3)),  # epoch mismatch
        (at(9), page(top=9), (), at(6)),  # since ahead of upto
        (at(2), page(3, 4, top=9), (), at(6)),  # page top beyond upto, short page
        (at(2), page(3, 4, top=4), pubs(6), at(6)),  # hole between page and live
    ]
    for since, hist, live, upto in cases:
        result = recover(since, hist, live, upto)
        assert not result.recovered
        assert result.position == upto
        assert result.replay == ()


def test_every_replay_is_after_the_position_and_not_past_upto() -> None:
    cases = [
        (at(2), page(3, 4, top=4), pubs(4, 5), at(5)),
        (at(2, "x"), page(1, 2, 3, top=3), pubs(3, 4), at(4)),
        (at(1), page(3, top=3), pubs(2, 3, 4), at(4)),
        (at(1), page(2, 3, 4, 5, 6, top=6), pubs(2), at(3)),
        (at(1), page(3, top=3), pubs(2, 4), at(5)),
    ]
    for since, hist, live, upto in cases:
        result = recover(since, hist, live, upto)
        assert all(result.position.offset < p.offset <= upto.offset for p in result.replay)
        assert len(set(offsets(result.replay))) == len(result.replay)
        assert offsets(result.replay) == sorted(offsets(result.replay))


# -- merge --------------------------------------------------------------------------------


def test_merge_orders_and_dedupes_across_sources() -> None:
    merged = merge(2, E, [*pubs(5, 3), *pubs(4, 3, 6), *pubs(5)])
    assert offsets(merged) == [3, 4, 5, 6]


def test_merge_drops_what_is_not_after_start_or_of_another_epoch() -> None:
    merged = merge(3, E, [*pubs(1, 2, 3, 4), *pubs(5, epoch="other")])
    assert offsets(merged) == [4]


def test_merge_leaves_holes_for_the_caller() -> None:
    assert offsets(merge(0, E, pubs(1, 2, 5, 7))) == [1, 2, 5, 7]


def test_merge_keeps_the_first_copy_of_an_offset() -> None:
    first = Publication(3, E, b"first")
    again = Publication(3, E, b"again")
    assert merge(0, E, [first, again]) == [first]


def test_merge_of_nothing() -> None:
    assert merge(0, E, []) == []
