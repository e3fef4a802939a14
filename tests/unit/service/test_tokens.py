"""Access tokens: created, resolved to their owner, listed and revoked on the artifact store,
and the ``searchtuner token`` commands that do the same for an operator.

The store keeps a token's SHA-256, never the token; a token is compared in constant time
(:func:`hmac.compare_digest`); every refusal says how to send a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest

from searchtuner import cli
from searchtuner.service import owners, tokens
from searchtuner.service.owners import owner_of
from searchtuner.service.tokens import TOKENS_PREFIX, TokenStore, Unauthenticated, token_id_of
from searchtuner.store import InvalidKeyError, LocalStore, NotFound, open_store

HOW_TO_SEND = (
    "send it as `Authorization: Bearer <token>` over HTTP or as gRPC metadata "
    "('authorization', 'Bearer <token>')"
)
HOW_TO_GET = "`searchtuner token create --owner NAME`"
INVALID = "the token is not valid"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def token_store(store: LocalStore) -> TokenStore:
    """Token records without an answer cache: a revoked token fails at once."""
    return TokenStore(store, cache_seconds=0)


def _stored_bytes(root: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file())


def _secret(token: str) -> str:
    """The part after ``st_<id>_`` (which may itself hold ``_``)."""
    return token[len("st_0123456789abcdef_") :]


def test_a_new_token_resolves_to_its_owner(token_store: TokenStore) -> None:
    issued = token_store.create("alice", "laptop")

    assert re.fullmatch(r"st_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", issued.token)
    assert token_id_of(issued.token) == issued.info.token_id
    assert (issued.info.owner, issued.info.name) == ("alice", "laptop")
    assert issued.info.created_at.endswith("+00:00")
    assert token_store.resolve(issued.token) == "alice"
    assert token_store.get(issued.info.token_id) == issued.info
    assert token_store.create("alice").token != issued.token  # every token is new


def test_the_store_keeps_the_digest_and_never_the_token(
    token_store: TokenStore, store: LocalStore, tmp_path: Path
) -> None:
    issued = token_store.create("alice", "ci")

    record = store.get_json(f"{TOKENS_PREFIX}{issued.info.token_id}.json")
    assert record["sha256"] == hashlib.sha256(issued.token.encode()).hexdigest()
    assert "token" not in record and set(record) == {
        "token_id", "owner", "name", "created_at", "sha256",
    }  # fmt: skip
    stored = _stored_bytes(tmp_path / "store")
    assert issued.info.token_id.encode() in stored  # the records are where the test looks
    assert issued.token.encode() not in stored
    assert _secret(issued.token).encode() not in stored


def test_tokens_are_compared_in_constant_time(
    token_store: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = token_store.create("alice")
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    forged = issued.token[:-43] + ("A" if issued.token[-1] != "A" else "B") * 43

    assert token_store.resolve(issued.token) == "alice"
    with pytest.raises(Unauthenticated, match=INVALID):
        token_store.resolve(forged)  # the right id, another secret

    digest = hashlib.sha256(issued.token.encode()).hexdigest()
    assert compared == [
        (digest, digest),
        (digest, hashlib.sha256(forged.encode()).hexdigest()),
    ]


@pytest.mark.parametrize(
    "token",
    [
        "st_0123456789abcdef_" + "x" * 43,  # well formed, no such id
        "st_0123456789abcdef_" + "x" * 42,  # one character short
        "st_0123456789ABCDEF_" + "x" * 43,  # the id is lower-case hex
        "Bearer st_0123456789abcdef_" + "x" * 43,  # the header's word, sent as the token
        "st_../../etc/passwd_" + "x" * 43,
        "not-a-token",
        " ",
    ],
    ids=["unknown", "short", "upper-case-id", "with-bearer", "traversal", "words", "space"],
)
def test_malformed_and_unknown_tokens_fail_alike(token_store: TokenStore, token: str) -> None:
    token_store.create("alice")

    with pytest.raises(Unauthenticated) as caught:
        token_store.resolve(token)

    assert str(caught.value) == (
        "the token is not valid (mistyped, revoked or from another service): ask for a new "
        f"one; an operator creates one with {HOW_TO_GET}"
    )


@pytest.mark.parametrize("token", [None, "", 42, b"st_x"], ids=repr)
def test_a_missing_token_is_refused_with_how_to_send_one(
    token_store: TokenStore, token: object
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        token_store.resolve(token)

    assert str(caught.value).startswith("this request needs a token: ")
    assert HOW_TO_SEND in str(caught.value) and HOW_TO_GET in str(caught.value)


def test_a_revoked_token_fails_at_once_without_a_cache(token_store: TokenStore) -> None:
    issued, kept = token_store.create("alice"), token_store.create("alice")
    assert token_store.resolve(issued.token) == "alice"

    revoked = token_store.revoke(issued.info.token_id)

    assert revoked == issued.info
    with pytest.raises(Unauthenticated, match=INVALID):
        token_store.resolve(issued.token)
    assert token_store.resolve(kept.token) == "alice"
    with pytest.raises(NotFound, match="no token"):
        token_store.get(issued.info.token_id)


def test_a_revoke_by_the_whole_token_works_too(token_store: TokenStore) -> None:
    issued = token_store.create("bob")

    assert token_store.revoke(issued.token).token_id == issued.info.token_id

    with pytest.raises(Unauthenticated, match=INVALID):
        token_store.resolve(issued.token)


def test_answers_are_cached_for_a_while(store: LocalStore) -> None:
    cached = TokenStore(store, cache_seconds=60)
    issued = cached.create("alice")
    assert cached.resolve(issued.token) == "alice"

    TokenStore(store).revoke(issued.info.token_id)  # elsewhere: another process, the CLI

    assert cached.resolve(issued.token) == "alice"  # until the cached answer expires
    with pytest.raises(Unauthenticated, match=INVALID):
        TokenStore(store, cache_seconds=0).resolve(issued.token)
    cached.revoke(cached.create("alice").info.token_id)  # a revoke here drops every answer
    with pytest.raises(Unauthenticated, match=INVALID):
        cached.resolve(issued.token)


def test_the_cache_time_comes_from_the_environment(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_TOKEN_CACHE_SECONDS", "0")
    assert TokenStore(store).cache_seconds == 0
    monkeypatch.delenv("SEARCHTUNER_TOKEN_CACHE_SECONDS")
    assert TokenStore(store).cache_seconds == 5
    assert TokenStore(store, cache_seconds=-1).cache_seconds == 0


def test_unknown_and_malformed_ids_are_not_found(token_store: TokenStore) -> None:
    with pytest.raises(NotFound, match=r"no token '0123456789abcdef' \(see `searchtuner token"):
        token_store.revoke("0123456789abcdef")
    with pytest.raises(NotFound, match="a token id is 16 hex digits"):
        token_store.revoke("../../owners/alice")
    with pytest.raises(NotFound, match="a token id is 16 hex digits"):
        token_store.get("nope")


@pytest.mark.parametrize("owner", ["", "../bob", "a/b", "x" * 300])
def test_a_token_needs_a_valid_owner_name(token_store: TokenStore, owner: str) -> None:
    with pytest.raises(InvalidKeyError):
        token_store.create(owner)
    assert list(token_store.list()) == []


def test_the_list_has_every_token_or_one_owners(token_store: TokenStore) -> None:
    alice = [token_store.create("alice", name) for name in ("laptop", "ci")]
    bob = token_store.create("bob")

    everyone = list(token_store.list())
    only_alice = list(token_store.list("alice"))

    assert {info.token_id for info in everyone} == {t.info.token_id for t in [*alice, bob]}
    assert {info.token_id for info in only_alice} == {t.info.token_id for t in alice}
    assert [info.token_id for info in token_store.list("carol")] == []
    assert everyone == sorted(everyone, key=lambda info: (info.created_at, info.token_id))


def test_owner_of_resolves_the_parameters_token_on_the_services_store(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_STORE", store.uri())
    monkeypatch.setenv("SEARCHTUNER_OWNER", "mallory")  # means nothing any more
    issued = TokenStore(store).create("alice")

    assert owner_of({"token": issued.token, "owner": "bob"}) == "alice"
    assert owners.token_store() is owners.token_store(store.uri())  # one per store
    for parameters in (None, {}, {"owner": "alice"}):
        with pytest.raises(Unauthenticated, match=re.escape(HOW_TO_SEND)):
            owner_of(parameters)

    TokenStore(store).revoke(issued.info.token_id)
    owners._token_store.cache_clear()  # the cached instance would answer for a few seconds
    with pytest.raises(Unauthenticated, match=INVALID):
        owner_of({"token": issued.token})


# The `searchtuner token` commands.


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def service_tokens(data_dir: Path) -> TokenStore:
    """The records the commands wrote, read as the service reads them."""
    return TokenStore(open_store(data_dir.as_uri()), cache_seconds=0)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_prints_the_token_alone_on_stdout(
    capsys: pytest.CaptureFixture[str], data_dir: Path, service_tokens: TokenStore
) -> None:
    code, out, err = _cli(
        capsys, "token", "create", "--owner", "alice", "--name", "ci", "--data-dir", str(data_dir)
    )

    assert code == 0
    token = out.removesuffix("\n")
    assert out == token + "\n" and "\n" not in token  # `TOKEN=$(searchtuner token create …)`
    assert service_tokens.resolve(token) == "alice"
    token_id = token_id_of(token)
    assert token_id is not None
    assert f"token {token_id} for owner 'alice' created" in err
    assert f"searchtuner token revoke {token_id}" in err and token not in err
    assert _secret(token).encode() not in _stored_bytes(data_dir)


def test_list_shows_ids_and_owners_but_never_secrets(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    made = {}
    for owner, name in [("alice", "laptop"), ("bob", "ci")]:
        code, out, _ = _cli(
            capsys, "token", "create", "--owner", owner, "--name", name, "--data-dir", str(data_dir)
        )
        assert code == 0
        made[owner] = out.strip()

    code, text, _ = _cli(capsys, "token", "list", "--data-dir", str(data_dir))
    _, only_bob, _ = _cli(capsys, "token", "list", "--owner", "bob", "--data-dir", str(data_dir))
    _, as_json, _ = _cli(capsys, "token", "list", "--json", "--data-dir", str(data_dir))

    assert code == 0
    lines = text.splitlines()
    assert len(lines) == 2
    for owner, token in made.items():
        assert any(line.startswith(f"{token_id_of(token)}  {owner}") for line in lines)
    assert only_bob.splitlines() == [line for line in lines if " bob " in line]
    listed = json.loads(as_json)
    assert {entry["token_id"] for entry in listed} == {token_id_of(t) for t in made.values()}
    assert {entry["name"] for entry in listed} == {"laptop", "ci"}
    for token in made.values():
        for shown in (text, only_bob, as_json):
            assert token not in shown and _secret(token) not in shown
            assert hashlib.sha256(token.encode()).hexdigest() not in shown


def test_list_of_an_empty_store_says_how_to_create_one(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, err = _cli(capsys, "token", "list", "--data-dir", str(data_dir))

    assert (code, out) == (0, "")
    assert "no tokens (create one: searchtuner token create --owner NAME)" in err


def test_revoke_ends_a_token(
    capsys: pytest.CaptureFixture[str], data_dir: Path, service_tokens: TokenStore
) -> None:
    _, out, _ = _cli(capsys, "token", "create", "--owner", "alice", "--data-dir", str(data_dir))
    token = out.strip()
    token_id = token_id_of(token)
    assert token_id is not None

    code, out, err = _cli(capsys, "token", "revoke", token_id, "--data-dir", str(data_dir))

    assert (code, out) == (0, "")
    assert f"revoked token {token_id} of owner 'alice'" in err
    with pytest.raises(Unauthenticated, match=INVALID):
        service_tokens.resolve(token)
    assert list(service_tokens.list()) == []


@pytest.mark.parametrize(
    ("token_id", "message"),
    [
        ("0123456789abcdef", "error: no token '0123456789abcdef' (see `searchtuner token list`)"),
        ("nope", "error: no token 'nope': a token id is 16 hex digits (see `token list`)"),
    ],
)
def test_revoke_of_an_unknown_id_exits_2_and_says_so(
    capsys: pytest.CaptureFixture[str], data_dir: Path, token_id: str, message: str
) -> None:
    _, kept, _ = _cli(capsys, "token", "create", "--owner", "alice", "--data-dir", str(data_dir))

    code, out, err = _cli(capsys, "token", "revoke", token_id, "--data-dir", str(data_dir))

    assert (code, out) == (2, "")
    assert err.strip() == message
    assert TokenStore(open_store(data_dir.as_uri())).resolve(kept.strip()) == "alice"


def test_the_commands_use_the_services_store_by_default(
    capsys: pytest.CaptureFixture[str], store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_STORE", store.uri())

    _, out, _ = _cli(capsys, "token", "create", "--owner", "carol")
    _, by_uri, _ = _cli(capsys, "token", "list", "--store", store.uri())

    assert TokenStore(store).resolve(out.strip()) == "carol"
    assert by_uri.startswith(f"{token_id_of(out.strip())}  carol")


def test_create_refuses_an_owner_that_cannot_name_a_namespace(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, err = _cli(
        capsys, "token", "create", "--owner", "../bob", "--data-dir", str(data_dir)
    )

    assert (code, out) == (2, "")
    assert err.startswith("error: ") and "owner" in err
    assert list(TokenStore(open_store(data_dir.as_uri())).list()) == []
