"""Config validation: every error names the file, the key path, what was expected and found."""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.cli.main import main
from scada.config import ConfigError, load_config, load_demo_config, parse_config
from scada.core.configbase import SecretError, SecretRef

MINIMAL = '[site]\nname = "T"\n'


def problems_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(MINIMAL)
    cfg = load_config(path)
    assert cfg.site.currency == "CNY" and cfg.site.currency_minor_units == 2
    assert cfg.hmi.host == "127.0.0.1"  # loopback unless configured
    assert cfg.data_dir == tmp_path / "var"


def test_embedded_demo_config_is_valid_and_same_as_example() -> None:
    cfg = load_demo_config()
    assert cfg.site.import_file == "embedded:site-demo.toml"
    assert {link.name for link in cfg.links} == {"gw-1", "gw-2"}
    example = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
    assert load_config(example).model_dump(exclude={"base_dir"}) == cfg.model_dump(exclude={"base_dir"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 1 not TOML at all
        ("[site\nname = 'x'", "not valid TOML"),
        # 2 a required section missing
        ("[hmi]\nport = 8080\n", "site: missing required key"),
        # 3 an unknown top-level key, with the allowed ones listed
        (MINIMAL + "colour = 'red'\n", "colour: unknown key (allowed here:"),
        # 4 an unknown nested key
        (MINIMAL + "[hmi]\nprot = 8080\n", "hmi.prot: unknown key (allowed here: default_language, host, insecure_ok, insecure_reason, port, push_interval_ms, secure_cookies, session_idle_minutes, session_max_hours, tls_cert, tls_key, ws_max_per_user, ws_max_total, ws_stall_timeout_s)"),
        # 5 a wrong type, no silent coercion of strings
        (MINIMAL + "[hmi]\nport = '8080'\n", "hmi.port: expected an integer, found '8080'"),
        # 6 out of range
        (MINIMAL + "[hmi]\nport = 70000\n", "hmi.port: expected a value <= 65535, found 70000"),
        # 7 a bad value in a list of tables names its index
        (
            MINIMAL
            + "[[links]]\nname='a'\nhost='127.0.0.1'\nport=502\n"
            + "[[links]]\nname='b'\nhost='127.0.0.1'\nport=503\n"
            + "[[links]]\nname='c'\nhost='127.0.0.1'\nport=504\ntimeout_s = -1\n",
            "links[2].timeout_s: expected a value > 0, found -1",
        ),
        # 8 an enumerated value
        (MINIMAL + "[logging]\nformat = 'xml'\n", "logging.format: expected one of 'human' or 'json', found 'xml'"),
        # 9 an unknown time zone
        ("[site]\nname='T'\ntimezone='Mars/Olympus'\n", "site.timezone: unknown time zone 'Mars/Olympus'"),
        # 10 a password inline in the database URL
        (MINIMAL + "[database]\nurl = 'postgresql://u:hunter2@db/scada'\n", "database.url: the URL must not contain a password"),
        # 11 a secret that names neither a variable nor a file
        (MINIMAL + "[admin]\npassword = {}\n", "admin.password: give exactly one of 'env'"),
        # 12 an unsupported database
        (MINIMAL + "[database]\nurl = 'mysql://db/scada'\n", "database.url: expected a sqlite:/// or postgresql:// URL"),
        # 13 a cross-field rule: tcp link without an endpoint
        (MINIMAL + "[[links]]\nname = 'a'\nkind = 'tcp'\n", "links[0]: a tcp link needs 'host' and 'port'"),
        # 14 duplicate link names
        (
            MINIMAL + "[[links]]\nname='a'\nhost='h'\nport=1\n[[links]]\nname='a'\nhost='h'\nport=2\n",
            "duplicate link name 'a'",
        ),
        # 15 a boolean written as a string
        (MINIMAL + "[database]\necho = 'yes'\n", "database.echo: expected true or false, found 'yes'"),
        # 16 an RTU bus with several requests in flight
        (
            MINIMAL + "[[links]]\nname='bus'\nkind='rtu'\nserial_port='/dev/ttyS0'\nmax_in_flight=2\n",
            "links[0]: an RTU bus allows one request in flight",
        ),
        # 17 an unknown currency without minor units
        ("[site]\nname='T'\ncurrency='XYZ'\n", "site: currency XYZ is not known: set site.minor_units"),
    ],
)
def test_bad_config_is_named_precisely(text: str, expected: str, tmp_path: Path) -> None:
    problems = problems_of(text, tmp_path)
    assert any(expected in p for p in problems), problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL + "[hmi]\nport = 'x'\nhost = 1\n[logging]\nlevel = 'loud'\n", tmp_path)
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {"hmi.port", "hmi.host", "logging.level"}


def test_base_dir_cannot_be_set_in_file(tmp_path: Path) -> None:
    problems = problems_of(MINIMAL.replace("[site]", "base_dir = '/'\n[site]"), tmp_path)
    assert "base_dir: unknown key" in problems[0]


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    cfg = parse_config(MINIMAL + "[runtime]\ndata_dir='data'\n", "x", tmp_path)
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.path("/abs/file") == Path("/abs/file")


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SECRET", "s3cret")
    assert SecretRef(env="T_SECRET").require() == "s3cret"
    (tmp_path / "pw").write_text("from-file\n")
    assert SecretRef(file="pw").require(tmp_path) == "from-file"
    monkeypatch.delenv("T_SECRET")
    with pytest.raises(SecretError, match="environment variable T_SECRET"):
        SecretRef(env="T_SECRET").require()
    with pytest.raises(SecretError, match="cannot read secret file"):
        SecretRef(file="missing").require(tmp_path)


def test_check_config_cli_lists_all_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "[hmi]\nport = 'x'\n[logging]\nlevel = 'loud'\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith(str(bad) + ": ") for line in err)
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    text = MINIMAL + "[[links]]\nname='a'\nhost='127.0.0.1'\nport=502\n"
    cfg = parse_config(text, "x", tmp_path, ["hmi.port=9090", "links[0].port=1502", "site.timezone=Europe/Paris"])
    assert cfg.hmi.port == 9090 and cfg.links[0].port == 1502 and cfg.site.timezone == "Europe/Paris"
    with pytest.raises(ConfigError, match="hmi.port: expected an integer, found 'abc'"):
        parse_config(text, "x", tmp_path, ["hmi.port='abc'"])
    with pytest.raises(ConfigError, match="links has no element 5"):
        parse_config(text, "x", tmp_path, ["links[5].port=1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_config(text, "x", tmp_path, ["hmi.port"])


PRODUCTION_OPCUA = '[opcua]\nhost = "0.0.0.0"\nsecurity = ["Basic256Sha256_SignAndEncrypt", "None"]\nallow_anonymous = true\n'


def test_check_config_refuses_insecure_servers_unless_a_reason_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "insecure.toml"
    bad.write_text(MINIMAL + PRODUCTION_OPCUA + '[hmi]\nhost = "0.0.0.0"\n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f'{bad}: opcua.security: security mode "None"' in err and "reachable from the network" in err
    assert f"{bad}: opcua.allow_anonymous:" in err and f"{bad}: hmi.host: the HMI on 0.0.0.0" in err
    # scada run refuses to start it too (before anything listens)
    assert main(["run", "--config", str(bad)]) == 2
    assert "opcua.security" in capsys.readouterr().err
    # anonymous access alone, even on loopback, is refused
    loop = tmp_path / "loopback.toml"
    loop.write_text(MINIMAL + "[opcua]\nallow_anonymous = true\n")
    assert main(["check-config", str(loop)]) == 2
    assert "opcua.allow_anonymous" in capsys.readouterr().err
    # a reason makes it a deliberate choice, reported as such
    ok = tmp_path / "reasoned.toml"
    ok.write_text(MINIMAL + PRODUCTION_OPCUA + 'insecure_ok = true\ninsecure_reason = "a closed plant network"\n'
                  '[hmi]\nhost = "0.0.0.0"\ninsecure_ok = true\ninsecure_reason = "TLS ends at the proxy"\n')
    assert main(["check-config", str(ok)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "because: a closed plant network" in out and "because: TLS ends at the proxy" in out
    # insecure_ok without a reason is itself an error
    unreasoned = tmp_path / "unreasoned.toml"
    unreasoned.write_text(MINIMAL + PRODUCTION_OPCUA + "insecure_ok = true\n")
    assert main(["check-config", str(unreasoned)]) == 2
    assert "opcua: insecure_reason: say why" in capsys.readouterr().err
    # TLS on the HMI is the other way; half of it is an error
    tls = tmp_path / "tls.toml"
    tls.write_text(MINIMAL + '[hmi]\nhost = "0.0.0.0"\ntls_cert = "hmi.pem"\ntls_key = "hmi.key"\n')
    assert main(["check-config", str(tls)]) == 0
    half = tmp_path / "half.toml"
    half.write_text(MINIMAL + '[hmi]\nhost = "0.0.0.0"\ntls_cert = "hmi.pem"\n')
    assert main(["check-config", str(half)]) == 2
    assert "tls_key" in capsys.readouterr().err


def test_the_demo_config_says_why_it_allows_insecure_opcua(capsys: pytest.CaptureFixture[str]) -> None:
    from scada.config import security_problems

    config = load_demo_config()
    assert config.opcua is not None and config.opcua.none_allowed and config.opcua.allow_anonymous
    assert config.opcua.insecure_ok and "demo" in config.opcua.insecure_reason
    assert security_problems(config) == []
    # the same demo on a network address is refused
    exposed = load_demo_config(["hmi.host=0.0.0.0"])
    assert [p.split(":")[0] for p in security_problems(exposed)] == ["hmi.host"]


def test_dlt645_links_are_parsed_and_their_problems_named(tmp_path: Path) -> None:
    from protocols.dlt645.config import Dlt645LinkConfig

    base = '[site]\nname = "x"\n[[links]]\nname = "gw"\nhost = "127.0.0.1"\nport = 5020\n'
    dlt = '[[links]]\nname = "bus"\nkind = "dlt645"\nhost = "127.0.0.1"\nport = 5021\n'
    config = parse_config(base + dlt + 'password = { env = "P" }\noperator_code = { env = "O" }\n', "t.toml", tmp_path)
    assert isinstance(config.links[1], Dlt645LinkConfig) and config.links[1].baudrate == 2400
    assert [link.name for link in config.simulated_links] == ["gw", "bus"]
    found = problems_of(base + dlt + 'password = "02123456"\nbogus = 1\n', tmp_path)
    assert any(p.endswith("links[1].password: expected a table, found '02123456'") for p in found), found
    assert any("links[1].bogus: unknown key (allowed here:" in p and "operator_code" in p for p in found), found
    found = problems_of(base + '[[links]]\nname = "bus"\nkind = "dlt645"\ntransport = "serial"\n', tmp_path)
    assert any("links[1]: a dlt645 link over serial needs 'serial_port'" in p for p in found), found
