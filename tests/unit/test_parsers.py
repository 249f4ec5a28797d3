"""The pure rule parsers of jupyterhub_config.py, called directly."""

import pytest
from jupyterhub_config import merge_gpu_rules, parse_bytes, parse_constraints, parse_db_url, parse_env_pairs, parse_gpus, parse_platforms, parse_preferences, parse_suffix_gpus, parse_suffix_images
from jupyterhub_swarm import Gpu, mask_url, plan_for_user, service_name, user_suffix


@pytest.mark.parametrize("text,expected", [
    ("4G", 4 * 1024**3),
    ("512M", 512 * 1024**2),
    ("1.5G", int(1.5 * 1024**3)),
    ("100k", 102400),
    ("2Gi", 2 * 1024**3),
    ("1048576", 1048576),
])
def test_sizes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["four", "4X", "-1G", "", "G"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_env_pairs_split_on_first_colon():
    pairs = parse_env_pairs("A:1;URL:http://db:5432/x;EMPTY:;")
    assert pairs == {"A": "1", "URL": "http://db:5432/x", "EMPTY": ""}


@pytest.mark.parametrize("text", ["A=1", "1A:x", "A B:1", ":x"])
def test_bad_env_pairs(text):
    with pytest.raises(ValueError):
        parse_env_pairs(text)


@pytest.mark.parametrize("text,count,visible", [
    ("", 0, ""),
    ("0", 0, ""),
    ("1", 1, ""),
    ("4", 4, ""),
    ("all", 0, "all"),
    ("ALL", 0, "all"),
    ("-1", 0, "all"),
    ("device_id=0", 0, "0"),
    ("device_id=0,2", 0, "0,2"),
    ("device_id=GPU-1a2b,GPU-3c", 0, "GPU-1a2b,GPU-3c"),
])
def test_gpus(text, count, visible):
    gpu = parse_gpus(text)
    assert (gpu.count, gpu.visible) == (count, visible)
    assert gpu.wanted == bool(count or visible)


@pytest.mark.parametrize("text", ["-2", "1.5", "two", "device_id=", "device=0", "device_id=a b"])
def test_bad_gpus(text):
    with pytest.raises(ValueError):
        parse_gpus(text)


def test_constraints_bare_keys_become_node_labels():
    assert parse_constraints(
        "node.role==manager, calculation_type==gpu,engine.labels.os!=windows,node.labels.z==a"
    ) == (
        "node.role==manager",
        "node.labels.calculation_type==gpu",
        "engine.labels.os!=windows",
        "node.labels.z==a",
    )


@pytest.mark.parametrize("text", ["node.role=manager", "==x", "node.role==", "a<b"])
def test_bad_constraints(text):
    with pytest.raises(ValueError):
        parse_constraints(text)


def test_preferences_are_docker_py_tuples():
    assert parse_preferences("spread:node.labels.zone,spread:rack") == (
        ("spread", "node.labels.zone"),
        ("spread", "node.labels.rack"),
    )


@pytest.mark.parametrize("text", ["binpack:node.labels.zone", "spread", "spread:"])
def test_bad_preferences(text):
    with pytest.raises(ValueError):
        parse_preferences(text)


def test_platforms():
    assert parse_platforms("amd64:linux, arm64:linux") == (
        ("amd64", "linux"), ("arm64", "linux"))
    with pytest.raises(ValueError):
        parse_platforms("amd64")


def test_suffix_images_with_registry_ports_and_tags():
    rules = parse_suffix_images(
        "base:calculation_type==cpu->jupyter/base-notebook:notebook-6.5.4;"
        "torch:calculation_type==gpu,node.role!=manager->reg.example:5000/gpu/torch:2.0;"
        "plain->img@sha256:" + "ab" * 32 + ";"
    )
    assert set(rules) == {"base", "torch", "plain"}
    assert rules["base"].image == "jupyter/base-notebook:notebook-6.5.4"
    assert rules["base"].constraints == ("node.labels.calculation_type==cpu",)
    assert rules["torch"].image == "reg.example:5000/gpu/torch:2.0"
    assert rules["torch"].constraints == (
        "node.labels.calculation_type==gpu", "node.role!=manager")
    assert rules["plain"].constraints == ()


@pytest.mark.parametrize("text", ["torch", "torch->", "->img", "a-b->img", "x:bad->img", "a->i;a->j"])
def test_bad_suffix_images(text):
    with pytest.raises(ValueError):
        parse_suffix_images(text)


def test_suffix_gpus():
    rules = parse_suffix_gpus("torch->1;big->device_id=0,1;all->all")
    assert rules["torch"].count == 1
    assert rules["big"].visible == "0,1"
    assert rules["all"].visible == "all"


@pytest.mark.parametrize("name,suffix", [
    ("alice-torch", "torch"),
    ("a-b-c", "c"),
    ("torch", None),       # no '-': no suffix, even if the name equals one
    ("-torch", None),
    ("alice-", None),
    ("Alice-Torch", "torch"),
])
def test_user_suffix_is_after_the_last_dash(name, suffix):
    assert user_suffix(name) == suffix


def test_plan_uses_the_rule_only_for_a_real_suffix():
    rules = merge_gpu_rules(
        parse_suffix_images("torch:calculation_type==gpu->gpu-image"),
        parse_suffix_gpus("torch->2"),
    )
    base = ("node.role==worker",)
    default_gpu = Gpu()
    plan = plan_for_user("alice-torch", "default", base, default_gpu, rules)
    assert plan.image == "gpu-image"
    assert plan.constraints == ("node.role==worker", "node.labels.calculation_type==gpu")
    assert plan.gpu.count == 2
    # first-character or substring matches are not suffixes
    for name in ("torch", "t-alice", "alice-torchy", "torch-alice"):
        other = plan_for_user(name, "default", base, default_gpu, rules)
        assert (other.image, other.constraints, other.gpu) == ("default", base, default_gpu), name
    # the inputs are untouched
    assert base == ("node.role==worker",)
    assert rules["torch"].constraints == ("node.labels.calculation_type==gpu",)


def test_suffix_gpu_rule_overrides_default_and_rule_without_gpu_keeps_it():
    rules = merge_gpu_rules(
        parse_suffix_images("cpu->cpu-image;gpu->gpu-image"),
        parse_suffix_gpus("cpu->0;"),
    )
    default = parse_gpus("all")
    assert plan_for_user("a-cpu", "i", (), default, rules).gpu.wanted is False
    assert plan_for_user("a-gpu", "i", (), default, rules).gpu.visible == "all"


def test_gpu_rule_needs_an_image_rule():
    with pytest.raises(ValueError, match="ghost"):
        merge_gpu_rules(parse_suffix_images("a->img"), parse_suffix_gpus("ghost->1"))


@pytest.mark.parametrize("url,expected", [
    ("sqlite:////data/jupyterhub.sqlite", "sqlite:////data/jupyterhub.sqlite"),
    ("postgresql://u:p@db:5432/jh", "postgresql+psycopg2://u:p@db:5432/jh"),
    ("postgres://u:p@db/jh", "postgresql+psycopg2://u:p@db/jh"),
    ("mysql://u:p@db:3306/jh", "mysql+pymysql://u:p@db:3306/jh"),
    ("mysql+pymysql://u:p@db/jh", "mysql+pymysql://u:p@db/jh"),
    ("mariadb://u:p@db/jh", "mysql+pymysql://u:p@db/jh"),
])
def test_db_urls(url, expected):
    assert parse_db_url(url) == expected


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql://jh:s3cret@db:5432/jh") == "postgresql://jh:***@db:5432/jh"
    assert mask_url("sqlite:////data/x.sqlite") == "sqlite:////data/x.sqlite"


def test_service_names_stay_dns_labels():
    short = service_name("jupyter", "alice")
    assert short == "jupyter-alice"
    long_a = service_name("jupyter", "a" * 80)
    long_b = service_name("jupyter", "a" * 79 + "b")
    assert len(long_a) <= 63 and len(long_b) <= 63
    assert long_a != long_b
