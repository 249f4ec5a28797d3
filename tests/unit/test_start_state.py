"""judge_start: what a new service's tasks mean, decided from swarm's task
list and the time waited alone (the real lists come from tests/e2e)."""

from jupyterhub_swarm import (StartState, addresses_held, given_up, judge_start, no_address_reason,
                              shorten, subnet_room)

NO_NODE = "no suitable node (scheduling constraints not satisfied on 1 node)"
NO_GPU = "no suitable node (insufficient resources on 1 node)"


def task(state, created="1", err=None, message=""):
    status = {"State": state, "Message": message}
    if err:
        status["Err"] = err
    return {"CreatedAt": created, "Status": status}


def test_running_wins_over_everything():
    tasks = [task("failed", "1", err="exit 1"), task("running", "2")]
    assert judge_start(tasks, 0, 60) == StartState("running")


def test_an_ended_task_ends_the_spawn_with_its_reason_even_when_replaced():
    tasks = [task("ready", "2", message="ready"),
             task("rejected", "1", err="No such image: nb:none")]  # out of order
    assert judge_start(tasks, 0.5, 60) == StartState("ended", "rejected", "No such image: nb:none")


def test_unplaceable_fails_only_after_a_moment():
    tasks = [task("pending", err=NO_NODE)]
    assert judge_start(tasks, 1, 60).kind == "waiting"
    assert judge_start(tasks, 3, 60) == StartState("unplaceable", "pending", NO_NODE)


def test_missing_resources_wait_for_the_resource_wait():
    tasks = [task("pending", err=NO_GPU)]
    assert judge_start(tasks, 30, 60) == StartState("waiting", "pending", NO_GPU)
    assert judge_start(tasks, 61, 60) == StartState("no_resources", "pending", NO_GPU)


def test_a_task_still_new_got_no_address():
    # what swarm shows of a task on a full overlay: "new", "created", no
    # error (seen on a /29 user network); allocation takes milliseconds
    tasks = [task("new", message="created")]
    assert judge_start(tasks, 5, 60).kind == "waiting"
    assert judge_start(tasks, 11, 60) == StartState("no_address", "new", "created")
    assert judge_start([task("pending", message="pending task scheduling")], 11, 60).kind == "waiting"


def test_room_and_addresses_held_on_a_subnet():
    assert subnet_room(["10.0.1.0/24"]) == 253
    assert subnet_room(["10.123.0.0/29", "10.124.0.0/30"]) == 5 + 1
    net = "n1"
    tasks = [{"NetworksAttachments": [{"Network": {"ID": net}, "Addresses": ["10.123.0.3/29"]},
                                      {"Network": {"ID": "other"}, "Addresses": ["10.0.9.3/24"]}]},
             {"NetworksAttachments": [{"Network": {"ID": net}, "Addresses": ["10.123.0.4/29"]}]},
             {"Status": {"State": "new"}}]  # no attachment yet
    services = [{"Endpoint": {"VirtualIPs": [{"NetworkID": net, "Addr": "10.123.0.2/29"}]}},
                {"Endpoint": {}}]
    assert addresses_held(tasks, services, net) == 3


def test_no_address_reason_says_full_only_when_the_count_says_so():
    full = no_address_reason("jupyterhub_network", ["10.123.0.0/29"], 5, 4, 1, 10.2)
    assert "the network is full" in full and "10.123.0.0/29" in full
    assert "SPAWNER_NETWORK_SUBNET" in full and "10s" in full
    room = no_address_reason("jupyterhub_network", ["10.0.1.0/24"], 253, 10, 1, 10)
    assert "full" not in room and "manager's log" in room


def test_waiting_reports_the_newest_task_and_its_message():
    tasks = [task("preparing", "2", message="preparing"), task("assigned", "1")]
    assert judge_start(tasks, 100, 0) == StartState("waiting", "preparing", "preparing")
    assert judge_start([], 100, 0) == StartState("no_task")


def test_shorten_keeps_distinct_names_distinct_and_within_the_limit():
    assert shorten("jupyter-alice", 63) == "jupyter-alice"
    a, b = shorten("x" * 80, 40, digits=8), shorten("x" * 79 + "y", 40, digits=8)
    assert len(a) == len(b) == 40 and a != b


def test_a_task_on_a_node_that_went_down_is_given_up():
    # what the manager shows for it (seen on the three-node test swarm): the
    # node "Down", the task "running" for ever, desired "shutdown"
    lost = {"Status": {"State": "running"}, "DesiredState": "shutdown", "NodeID": "n2"}
    assert given_up(lost)
    assert not given_up({"Status": {"State": "running"}, "DesiredState": "running"})
    assert not given_up({"Status": {"State": "failed"}, "DesiredState": "shutdown"})  # ended: poll's other branch
    assert not given_up(None)
