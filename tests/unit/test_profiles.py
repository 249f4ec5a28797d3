"""Profiles (SPAWNER_PROFILES and SPAWNER_PROFILE_*): parsing and its
errors, the spawn page's form per user and group, the service spec a
choice gives, refused choices, suffix users, and the choice kept in the
database. Spawners are built as the hub builds them (spawner_harness: real
ORM, real User, groups in the ORM); tests/e2e/test_16_profiles.py does the
same through the hub's API on a real swarm."""

import asyncio
import re

import pytest
from conftest import CONFIG_FILE, MINIMAL_ENV, load_config
from jupyterhub_swarm import ConfigError
from spawner_harness import RecordingDocker, make_spawner, spawn_spec
from test_operator import run_check
from tornado import web

CPU_IMAGE = "jupyter/scipy-notebook:2024-01-01"
GPU_IMAGE = "registry.lab:5000/ml/torch-notebook:2.3"
BASE = "node.role==manager"
PROFILES = {
    "SPAWNER_CONSTRAINTS": BASE,
    "SPAWNER_PROFILES": f"cpu->{CPU_IMAGE};GPU:calculation_type==gpu,zone==a->{GPU_IMAGE}",
    "SPAWNER_PROFILE_GPUS": "gpu->2",
    "SPAWNER_PROFILE_NAMES": "cpu->CPU <Python> & R;gpu->GPU (PyTorch)",
    "SPAWNER_PROFILE_DESCRIPTIONS": "gpu->Two GPUs, for \"deep\" learning <script>",
    "SPAWNER_PROFILE_GROUPS": "gpu->gpu,staff",
    # a suffix rule, as before profiles
    "SPAWNER_CONSTRAINT_IMAGES": "torch:calculation_type==gpu->my/torch:1",
    "SPAWNER_CONSTRAINT_WITH_GPUS": "torch->1",
}


def cfg_with(**env):
    return load_config(dict(MINIMAL_ENV, **env))


def container(spec):
    return spec["task_template"]["ContainerSpec"]


def constraints(spec):
    return spec["task_template"]["Placement"]["Constraints"]


def gpus(spec):
    reservations = spec["task_template"]["Resources"].get("Reservations", {})
    return reservations.get("GenericResources")


def form_of(cfg, username, groups=()):
    return asyncio.run(make_spawner(cfg, username, groups=groups).get_options_form())


def radio_values(form):
    return re.findall(r'<input type="radio" name="profile" id="[^"]*" value="([^"]*)"', form)


def checked_value(form):
    return re.findall(r'value="([^"]*)" checked', form)


# -- parsing ------------------------------------------------------------------

def test_profiles_parsed_in_order_with_names_groups_and_gpus():
    sp = cfg_with(**PROFILES).SwarmUserSpawner
    cpu, gpu = sp.profiles
    assert (cpu.key, cpu.rule.image, cpu.rule.constraints, cpu.rule.gpu) == (
        "cpu", CPU_IMAGE, (), None)
    assert gpu.key == "gpu"  # keys are matched without regard to case
    assert gpu.rule.image == GPU_IMAGE
    assert gpu.rule.constraints == ("node.labels.calculation_type==gpu", "node.labels.zone==a")
    assert gpu.rule.gpu.count == 2
    assert (cpu.name, gpu.name) == ("CPU <Python> & R", "GPU (PyTorch)")
    assert (cpu.groups, gpu.groups) == ((), ("gpu", "staff"))
    assert sp.default_profile == "cpu"  # the first, unless SPAWNER_PROFILE_DEFAULT says


def test_default_profile_named():
    sp = cfg_with(**PROFILES, SPAWNER_PROFILE_DEFAULT="GPU").SwarmUserSpawner
    assert sp.default_profile == "gpu"


def test_unset_means_no_profiles():
    sp = load_config(MINIMAL_ENV).SwarmUserSpawner
    assert sp.profiles == ()


P = f"cpu->{CPU_IMAGE};gpu->{GPU_IMAGE}"


@pytest.mark.parametrize("env,variable,value,accepted", [
    ({"SPAWNER_PROFILES": "cpu"}, "SPAWNER_PROFILES", "cpu", "bad rule 'cpu'"),
    ({"SPAWNER_PROFILES": "c-pu->x"}, "SPAWNER_PROFILES", "c-pu->x",
     "bad profile 'c-pu' in 'c-pu->x': ASCII letters, digits, '_' and '.'"),
    ({"SPAWNER_PROFILES": "cpu->a;CPU->b"}, "SPAWNER_PROFILES", "cpu->a;CPU->b",
     "profile 'CPU' given twice"),
    ({"SPAWNER_PROFILES": "cpu->Bad/Image"}, "SPAWNER_PROFILES", "cpu->Bad/Image",
     "bad image in rule 'cpu->Bad/Image'"),
    ({"SPAWNER_PROFILES": "cpu:zone=a->x"}, "SPAWNER_PROFILES", "cpu:zone=a->x",
     "expected key==value or key!=value"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_GPUS": "big->1"}, "SPAWNER_PROFILE_GPUS",
     "big->1", "keys of SPAWNER_PROFILES (cpu, gpu); unknown: big"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_GPUS": "gpu->two"}, "SPAWNER_PROFILE_GPUS",
     "gpu->two", "a positive integer, 0, -1, all, or device_id="),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_GPUS": "gpu->1;gpu->2"}, "SPAWNER_PROFILE_GPUS",
     "gpu->1;gpu->2", "profile 'gpu' given twice"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_NAMES": "gpux->GPU"}, "SPAWNER_PROFILE_NAMES",
     "gpux->GPU", "keys of SPAWNER_PROFILES (cpu, gpu); unknown: gpux"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_NAMES": "gpu->"}, "SPAWNER_PROFILE_NAMES",
     "gpu->", "key->display name separated by ';'"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_DESCRIPTIONS": "x->y"},
     "SPAWNER_PROFILE_DESCRIPTIONS", "x->y", "keys of SPAWNER_PROFILES (cpu, gpu); unknown: x"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_GROUPS": "gpus->gpu"}, "SPAWNER_PROFILE_GROUPS",
     "gpus->gpu", "keys of SPAWNER_PROFILES (cpu, gpu); unknown: gpus"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_GROUPS": "gpu->,"}, "SPAWNER_PROFILE_GROUPS",
     "gpu->,", "JupyterHub group names separated by ','"),
    ({"SPAWNER_PROFILES": P, "SPAWNER_PROFILE_DEFAULT": "tpu"}, "SPAWNER_PROFILE_DEFAULT",
     "tpu", "a key of SPAWNER_PROFILES (cpu, gpu)"),
    ({"SPAWNER_PROFILE_NAMES": "cpu->CPU"}, "SPAWNER_PROFILE_NAMES", "cpu->CPU",
     "keys of SPAWNER_PROFILES (none: SPAWNER_PROFILES is empty)"),
    ({"SPAWNER_PROFILE_DEFAULT": "cpu"}, "SPAWNER_PROFILE_DEFAULT", "cpu",
     "a key of SPAWNER_PROFILES (none: SPAWNER_PROFILES is empty)"),
])
def test_bad_profile_settings_stop_the_hub_naming_variable_value_and_forms(
        env, variable, value, accepted):
    with pytest.raises(ConfigError) as err:
        cfg_with(**env)
    message = str(err.value)
    assert message.startswith(f"Configuration error: {variable}={value!r} is invalid: expected ")
    assert accepted in message


def test_bad_profile_setting_exits_the_hub_with_status_1():
    """The hub loads the file as the check command does: status 1, one line."""
    code, out, err = run_check(dict(MINIMAL_ENV, SPAWNER_PROFILES="cpu->a;cpu->b"))
    assert code == 1
    assert "Configuration error: SPAWNER_PROFILES='cpu->a;cpu->b' is invalid" in err
    assert "Traceback" not in err
    assert CONFIG_FILE.exists()


# -- the form ---------------------------------------------------------------------

def test_no_profiles_no_form():
    assert form_of(load_config(MINIMAL_ENV), "alice") == ""


def test_form_lists_only_what_the_user_may_choose():
    cfg = cfg_with(**PROFILES)
    assert radio_values(form_of(cfg, "alice")) == ["cpu"]
    assert radio_values(form_of(cfg, "alice", groups=["students"])) == ["cpu"]
    assert radio_values(form_of(cfg, "gina", groups=["gpu"])) == ["cpu", "gpu"]
    assert radio_values(form_of(cfg, "sam", groups=["staff"])) == ["cpu", "gpu"]


def test_form_says_image_gpus_and_where_in_plain_words_escaped():
    form = form_of(cfg_with(**PROFILES), "gina", groups=["gpu"])
    assert "CPU &lt;Python&gt; &amp; R" in form
    assert "<Python>" not in form and "<script>" not in form
    assert "Two GPUs, for &quot;deep&quot; learning &lt;script&gt;" in form
    gpu_part = form[form.index('value="gpu"'):]
    assert GPU_IMAGE in gpu_part
    assert "2 GPUs reserved" in gpu_part
    assert ("on nodes where node.role==manager and node.labels.calculation_type==gpu "
            "and node.labels.zone==a") in gpu_part
    cpu_part = form[form.index('value="cpu"'):form.index('value="gpu"')]
    assert CPU_IMAGE in cpu_part and "no GPU" in cpu_part
    assert checked_value(form) == ["cpu"]


def test_form_checks_the_default_or_the_last_choice():
    cfg = cfg_with(**PROFILES, SPAWNER_PROFILE_DEFAULT="gpu")
    assert checked_value(form_of(cfg, "gina", groups=["gpu"])) == ["gpu"]
    # the default is one alice may not choose: her first
    assert checked_value(form_of(cfg, "alice")) == ["cpu"]
    spawner = make_spawner(cfg_with(**PROFILES), "gina", groups=["gpu"])
    spawner.user_options = {"profile": "gpu"}  # what JupyterHub kept from her last spawn
    assert checked_value(asyncio.run(spawner.get_options_form())) == ["gpu"]


def test_suffix_user_gets_no_form():
    assert form_of(cfg_with(**PROFILES), "alice-torch", groups=["gpu"]) == ""


def test_no_form_when_every_profile_is_for_other_groups():
    cfg = cfg_with(SPAWNER_PROFILES=f"gpu->{GPU_IMAGE}", SPAWNER_PROFILE_GROUPS="gpu->gpu")
    assert form_of(cfg, "alice") == ""
    spec, _, _ = spawn_spec(cfg, "alice")
    assert container(spec)["Image"] == "jupyter/base-notebook:notebook-6.5.4"


# -- what a choice gives --------------------------------------------------------------

def test_gpu_choice_gives_exactly_its_image_constraints_and_gpus():
    spec, _, _ = spawn_spec(cfg_with(**PROFILES), "gina", groups=["gpu"],
                            user_options={"profile": "gpu"})
    assert container(spec)["Image"] == GPU_IMAGE
    assert constraints(spec) == [BASE, "node.labels.calculation_type==gpu",
                                 "node.labels.zone==a"]
    assert gpus(spec) == [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}]
    assert spec["name"] == "jupyter-gina"  # the user's one server, as before


def test_cpu_choice_and_no_choice_give_the_cpu_profile():
    cfg = cfg_with(**PROFILES)
    for options in ({"profile": "cpu"}, {}):
        spec, _, _ = spawn_spec(cfg, "gina", groups=["gpu"], user_options=options)
        assert container(spec)["Image"] == CPU_IMAGE
        assert constraints(spec) == [BASE]
        assert gpus(spec) is None
        env = dict(line.split("=", 1) for line in container(spec)["Env"])
        assert env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_no_choice_gives_the_named_default():
    spec, _, _ = spawn_spec(cfg_with(**PROFILES, SPAWNER_PROFILE_DEFAULT="gpu"), "gina",
                            groups=["gpu"], user_options={})
    assert container(spec)["Image"] == GPU_IMAGE


def test_form_field_reaches_the_spec_like_the_api_body():
    cfg = cfg_with(**PROFILES)
    spawner = make_spawner(cfg, "gina", groups=["gpu"])
    options = spawner.run_options_from_form({"profile": ["gpu"]})
    assert options == {"profile": "gpu"}  # what the API takes, and JupyterHub stores
    spawner.user_options = options
    fake = spawner.docker = RecordingDocker(spawner.network_name)
    asyncio.run(spawner.start())
    assert container(fake.created)["Image"] == GPU_IMAGE


def test_profiles_get_the_global_preferences_and_platforms():
    spec, _, _ = spawn_spec(cfg_with(**PROFILES, SPAWNER_PREFERENCE="spread:zone",
                                     SPAWNER_PLATFORM="amd64:linux"),
                            "gina", groups=["gpu"], user_options={"profile": "gpu"})
    placement = spec["task_template"]["Placement"]
    assert placement["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
    assert placement["Platforms"] == [{"Architecture": "amd64", "OS": "linux"}]


def test_a_later_spawn_of_the_same_spawner_starts_from_the_configured_image():
    cfg = cfg_with(SPAWNER_PROFILES=f"gpu->{GPU_IMAGE}", SPAWNER_PROFILE_GROUPS="gpu->gpu")
    spawner = make_spawner(cfg, "gina", groups=["gpu"])
    spawner.docker = RecordingDocker(spawner.network_name)
    asyncio.run(spawner.start())
    # gina leaves the group: her next server is the plain one again
    spawner.user.orm_user.groups.clear()
    spawner.user.db.commit()
    fake = spawner.docker = RecordingDocker(spawner.network_name)
    spawner.user_options = {}
    asyncio.run(spawner.start())
    assert container(fake.created)["Image"] == "jupyter/base-notebook:notebook-6.5.4"


# -- refused choices: 400 before anything is made --------------------------------------

def refused(spawner, options):
    """What JupyterHub's spawn does with the options before the certificates
    and start(): Spawner._run_apply_user_options."""
    with pytest.raises(web.HTTPError) as err:
        asyncio.run(spawner._run_apply_user_options(options))
    return err.value


@pytest.mark.parametrize("user,groups,asked,allowed", [
    ("alice", [], "gpu", "cpu"),  # a profile of a group she is not in
    ("alice", [], "tpu", "cpu"),  # no such profile
    ("gina", ["gpu"], "tpu", "cpu, gpu"),
])
def test_refused_choice_answers_400_naming_the_users_profiles(user, groups, asked, allowed):
    spawner = make_spawner(cfg_with(**PROFILES), user, groups=groups)
    error = refused(spawner, {"profile": asked})
    assert error.status_code == 400
    assert error.jupyterhub_message == (
        f"Your server was not started: unknown profile {asked!r}: you may choose {allowed}")
    # and start() itself refuses it too, before any docker call
    spawner.user_options = {"profile": asked}
    fake = spawner.docker = RecordingDocker(spawner.network_name)
    with pytest.raises(web.HTTPError):
        asyncio.run(spawner.start())
    assert fake.created is None


def test_non_string_profile_refused():
    spawner = make_spawner(cfg_with(**PROFILES), "alice")
    assert refused(spawner, {"profile": 3}).status_code == 400


def test_suffix_user_and_unset_profiles_refuse_a_choice():
    for cfg, user in ((cfg_with(**PROFILES), "alice-torch"), (load_config(MINIMAL_ENV), "bob")):
        error = refused(make_spawner(cfg, user, groups=["gpu"]), {"profile": "gpu"})
        assert error.status_code == 400
        assert "you have no profiles to choose from" in error.jupyterhub_message


def test_suffix_user_unchanged_by_profiles():
    spec, _, _ = spawn_spec(cfg_with(**PROFILES), "alice-torch", groups=["gpu"])
    assert container(spec)["Image"] == "my/torch:1"
    assert constraints(spec) == [BASE, "node.labels.calculation_type==gpu"]
    assert gpus(spec) == [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]


def test_plain_user_without_profiles_unchanged():
    spec, _, _ = spawn_spec(cfg_with(SPAWNER_CONSTRAINTS=BASE), "bob", user_options={})
    assert container(spec)["Image"] == "jupyter/base-notebook:notebook-6.5.4"
    assert constraints(spec) == [BASE]


# -- the choice outlives the hub ------------------------------------------------------------

def test_choice_kept_in_the_database_is_used_after_a_hub_restart():
    cfg = cfg_with(**PROFILES)
    spawner = make_spawner(cfg, "gina", groups=["gpu"])
    # what JupyterHub's User.spawn does with the options of a spawn
    spawner.orm_spawner.user_options = {"profile": "gpu"}
    spawner.user.db.commit()
    db = spawner.user.db
    # a restarted hub builds the user and spawner anew from the database
    again = make_spawner(cfg, "gina", db=db)
    assert again is not spawner
    assert again.user_options == {"profile": "gpu"}
    assert again.user_plan().image == GPU_IMAGE


# -- the check command ------------------------------------------------------------------

def test_check_lists_profiles_per_user_with_group_limits():
    code, out, err = run_check(dict(MINIMAL_ENV, **PROFILES), "alice", "bob-torch")
    assert code == 0, err
    alice = out.split("user alice:")[1].split("user bob-torch:")[0]
    assert f"image: {CPU_IMAGE}" in alice  # without a choice: the default profile
    assert (f"    cpu (CPU <Python> & R; default; for everyone): image {CPU_IMAGE}; "
            f"constraints {BASE}; gpus no GPU; runs on nodes where {BASE}") in alice
    assert (f"    gpu (GPU (PyTorch); only for members of group gpu, staff): image {GPU_IMAGE}; "
            f"constraints {BASE}, node.labels.calculation_type==gpu, node.labels.zone==a; "
            "gpus 2 GPUs reserved;") in alice
    bob = out.split("user bob-torch:")[1]
    assert "image: my/torch:1" in bob
    assert "profiles: none (the suffix rule -torch applies, no form)" in bob


def test_a_refused_choice_does_not_become_the_stored_one():
    """JupyterHub stores a spawn's options before applying them: after a
    refusal, a start without a choice (API without a body) must get the
    last profile that started, not the refused one again."""
    cfg = cfg_with(**PROFILES)
    spawner = make_spawner(cfg, "gina", groups=["gpu"])
    spawner.user_options = spawner.orm_spawner.user_options = {"profile": "gpu"}
    spawner.docker = RecordingDocker(spawner.network_name)
    asyncio.run(spawner.start())
    state = spawner.get_state()
    assert state["profile"] == "gpu"
    # a hub restart: the spawner is built anew and loads its state
    again = make_spawner(cfg, "gina", db=spawner.user.db)
    again.load_state(state)
    again.orm_spawner.user_options = {"profile": "tpu"}  # as User.spawn stores them
    error = refused(again, {"profile": "tpu"})
    assert error.status_code == 400
    assert again.orm_spawner.user_options == {"profile": "gpu"}
    assert again.user_options == {"profile": "gpu"}
    # nothing started yet: nothing to keep
    fresh = make_spawner(cfg, "hal")
    fresh.orm_spawner.user_options = {"profile": "tpu"}
    refused(fresh, {"profile": "tpu"})
    assert fresh.orm_spawner.user_options == {}


def test_check_marks_the_configured_default_and_says_what_no_group_gets():
    env = dict(MINIMAL_ENV, **PROFILES, SPAWNER_PROFILE_DEFAULT="gpu")
    code, out, err = run_check(env, "alice")
    assert code == 0, err
    assert "what a user in no group gets without choosing, profile cpu" in out
    assert "    cpu (CPU <Python> & R; for everyone)" in out
    assert "    gpu (GPU (PyTorch); default; only for members of group gpu, staff)" in out
    assert f"  image: {CPU_IMAGE}" in out
