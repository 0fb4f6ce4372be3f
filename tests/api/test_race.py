"""Concurrency (spec/API.md section 3): a number has at most one ACTIVE link at any moment; of N
simultaneous requests linking one free number to different apps exactly one gets 200."""

import threading

import pytest
import requests

from conftest import MSG_NUM_CONFLICT, assert_error, ok

N = 16


def concurrently(fns):
    """Run the callables at the same instant (a barrier), each on its own thread and connection;
    return their results in order."""
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)

    def run(i, fn):
        with requests.Session() as s:
            # Warm the connection before the barrier so the requests really overlap.
            s.get(fn.server_url + "/healthz", timeout=10)
            barrier.wait(timeout=30)
            try:
                results[i] = fn(s)
            except Exception as e:  # reported by the assertions below
                results[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return results


def linker(client, app_id, number):
    def fn(session):
        return client.post(f"/apps/{app_id}/numbers", json={"voip_number": number},
                           session=session, timeout=30)
    fn.server_url = client.server.url
    return fn


@pytest.mark.parametrize("round_", range(4))
def test_one_number_many_apps_exactly_one_wins(org, round_):
    api = org.client()
    apps = [api.create_app(name=f"race {round_}.{i}") for i in range(N)]
    (num,) = org.add_numbers(1)
    results = concurrently([linker(api, a["app_id"], num) for a in apps])
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    statuses = [r.status_code for r in results]
    assert sorted(statuses) == [200] + [409] * (N - 1), statuses
    winner = statuses.index(200)
    link = ok(results[winner])
    assert link["app_id"] == apps[winner]["app_id"] and link["voip_number"] == num
    for r in results:
        if r.status_code == 409:
            assert_error(r, 409, MSG_NUM_CONFLICT)
    holders = [a["app_id"] for a in apps if api.numbers(a["app_id"])]
    assert holders == [apps[winner]["app_id"]]
    assert api.numbers(apps[winner]["app_id"]) == [link]
    assert num not in api.available_numbers()


def test_same_number_same_app_concurrently_is_idempotent(org):
    api = org.client()
    app = api.create_app()
    (num,) = org.add_numbers(1)
    results = concurrently([linker(api, app["app_id"], num) for _ in range(N)])
    assert not [r for r in results if isinstance(r, Exception)]
    assert [r.status_code for r in results] == [200] * N, [r.text for r in results]
    links = [ok(r) for r in results]
    assert all(x == links[0] for x in links), links
    assert api.numbers(app["app_id"]) == [links[0]]


def test_many_numbers_one_app_concurrently(org):
    """Different numbers never conflict with each other."""
    api = org.client()
    app = api.create_app()
    nums = org.add_numbers(N)
    results = concurrently([linker(api, app["app_id"], n) for n in nums])
    assert not [r for r in results if isinstance(r, Exception)]
    assert [r.status_code for r in results] == [200] * N, [r.text for r in results]
    assert sorted(x["voip_number"] for x in api.numbers(app["app_id"])) == sorted(nums)


def test_link_unlink_storm_keeps_at_most_one_link(org):
    """Apps fight over one number while its holder unlinks it: never two ACTIVE links."""
    api = org.client()
    apps = [api.create_app(name=f"storm {i}") for i in range(8)]
    (num,) = org.add_numbers(1)
    for _ in range(3):
        fns = [linker(api, a["app_id"], num) for a in apps]

        def unlinker(session, a=apps[0]):
            return api.delete(f"/apps/{a['app_id']}/numbers/{num}", session=session, timeout=30)
        unlinker.server_url = api.server.url
        results = concurrently(fns + [unlinker])
        assert not [r for r in results if isinstance(r, Exception)]
        assert all(r.status_code in (200, 409) for r in results[:-1]), [r.text for r in results]
        assert results[-1].status_code in (200, 404)
        holders = [a["app_id"] for a in apps if api.numbers(a["app_id"])]
        assert len(holders) <= 1, holders
        for a in holders:
            ok(api.delete(f"/apps/{a}/numbers/{num}"))
        assert num in api.available_numbers()


def test_concurrent_creates_get_distinct_ids(org):
    api = org.client()

    def creator(i):
        def fn(session):
            return api.post("/apps", json={"name": f"c{i}", "answer_url": "https://e.com/"},
                            session=session, timeout=30)
        fn.server_url = api.server.url
        return fn

    results = concurrently([creator(i) for i in range(N)])
    ids = [ok(r)["app_id"] for r in results]
    assert len(set(ids)) == N
    assert sorted(a["app_id"] for a in api.list_apps()) == sorted(ids)


def test_delete_app_racing_link_never_strands_the_number(org):
    """DELETE frees the app's links in the same transaction; a link racing with it must not leave
    an ACTIVE link to a deleted app (the number would be neither available nor unlinkable)."""
    api = org.client()
    nums = org.add_numbers(8)
    spare = api.create_app(name="spare")
    for num in nums:
        app = api.create_app(name="doomed")

        def link(session, a=app, n=num):
            return api.post(f"/apps/{a['app_id']}/numbers", json={"voip_number": n},
                            session=session, timeout=30)

        def delete(session, a=app):
            return api.delete(f"/apps/{a['app_id']}", session=session, timeout=30)

        link.server_url = delete.server_url = api.server.url
        r_link, r_del = concurrently([link, delete])
        assert r_del.status_code == 200, r_del.text
        assert r_link.status_code in (200, 404), r_link.text
        assert num in api.available_numbers(), f"{num} stranded by a link to a deleted app"
        assert api.link(spare["app_id"], num)["app_id"] == spare["app_id"]
