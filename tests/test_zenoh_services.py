"""Services on the Zenoh backend: rmw_zenoh's key layout and service type hashes, a round trip between two
nodes, the errors a caller sees (no server, a failing handler), and the command node's safety services."""

import threading
import time

import pytest
from rosbags.typesys import get_types_from_msg

from dbp_control.core.channels import CHANNELS, SERVICES, Service
from dbp_control.core.data.bags import SERVICE_DEFINITIONS, typestore
from dbp_control.middleware.port import PortError
from dbp_control.middleware.zenoh_backend import ZenohNode, open_router, service_key, service_rihs01
from dbp_control.nodes.processes import NodeProcesses, free_endpoint


def test_service_keys_follow_rmw_zenoh_and_hash_as_jazzy_does():
    # the RIHS01 hash a Jazzy rmw_zenoh puts in example_interfaces/srv/SetBool's key expression (public)
    fields = {f"example_interfaces/srv/SetBool{suffix}": next(iter(get_types_from_msg(text, "x/msg/T").values()))
              for suffix, text in (("_Request", "bool data"), ("_Response", "bool success\nstring message"))}
    assert service_rihs01("example_interfaces/srv/SetBool", fields) == \
        "RIHS01_a69782e5631b12e15c8e218410de1685bbf13e382718295adad14037a24afbe8"
    assert service_key("/dbp/set_enabled", "std_srvs/srv/SetBool", "humble") == \
        "0/dbp/set_enabled/std_srvs::srv::dds_::SetBool_/TypeHashNotSupported"
    jazzy = service_key("/dbp/set_enabled", "std_srvs/srv/SetBool", "jazzy", domain_id=3)
    assert jazzy.startswith("3/dbp/set_enabled/std_srvs::srv::dds_::SetBool_/RIHS01_")
    assert jazzy != service_key("/dbp/set_enabled", "std_srvs/srv/Trigger", "jazzy", domain_id=3)
    assert set(SERVICE_DEFINITIONS) >= {s.srv_type for s in SERVICES.values()}
    with pytest.raises(ValueError, match="unknown service type 'std_srvs/srv/Empty'"):
        service_key("/x", "std_srvs/srv/Empty", "jazzy")


@pytest.fixture()
def two_nodes():
    endpoint = free_endpoint()
    router = open_router(endpoint)
    server, caller = ZenohNode("server", endpoint=endpoint), ZenohNode("caller", endpoint=endpoint)
    threading.Thread(target=server.spin, daemon=True).start()
    yield server, caller
    caller.shutdown()
    server.shutdown()
    router.close()


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_a_request_gets_its_response_and_handlers_run_on_the_executor(distro):
    endpoint = free_endpoint()
    router = open_router(endpoint)
    server = ZenohNode("server", endpoint=endpoint, distro=distro)
    caller = ZenohNode("caller", endpoint=endpoint, distro=distro)
    spinner = threading.Thread(target=server.spin, daemon=True)
    spinner.start()
    types = typestore(distro).types
    threads = []

    def handler(request):
        threads.append(threading.current_thread())
        return types["std_srvs/srv/SetBool_Response"](success=request.data, message=f"got {request.data}")

    try:
        service = Service("/test/set", "std_srvs/srv/SetBool")
        server.service(service, handler)
        client = caller.client(service)
        time.sleep(0.5)  # the queryable is known to the router
        for value in (True, False, True):
            response = client.call(types["std_srvs/srv/SetBool_Request"](data=value), timeout_s=5)
            assert (response.success, response.message) == (value, f"got {value}")
        assert threads == [spinner] * 3
    finally:
        caller.shutdown()
        server.shutdown()
        router.close()


def test_no_server_and_a_failing_handler_are_errors_that_name_the_service(two_nodes):
    server, caller = two_nodes
    types = typestore("humble").types
    request = types["std_srvs/srv/Trigger_Request"](structure_needs_at_least_one_member=0)
    with pytest.raises(PortError, match=r"service /test/nobody \(std_srvs/srv/Trigger\): no response within 0.5 s"):
        caller.client(Service("/test/nobody", "std_srvs/srv/Trigger")).call(request, timeout_s=0.5)

    def broken(_request):
        raise RuntimeError("the arm is not homed")

    server.service(Service("/test/broken", "std_srvs/srv/Trigger"), broken)
    time.sleep(0.5)
    with pytest.raises(PortError, match="/test/broken: the arm is not homed"):
        caller.client(Service("/test/broken", "std_srvs/srv/Trigger")).call(request, timeout_s=5)
    # a request without rmw_zenoh's attachment cannot be answered so that a client would match it: refused
    (reply,) = list(caller.session.get(service_key("/test/broken", "std_srvs/srv/Trigger", "humble"),
                                       payload=b"\x00\x01\x00\x00\x00", timeout=5))
    assert reply.ok is None and "malformed std_srvs/srv/Trigger request" in reply.err.payload.to_string()
    # the server's executor survived the failure
    server.service(Service("/test/ok", "std_srvs/srv/Trigger"),
                   lambda _: types["std_srvs/srv/Trigger_Response"](success=True, message="ok"))
    time.sleep(0.5)
    assert caller.client(Service("/test/ok", "std_srvs/srv/Trigger")).call(request, timeout_s=5).message == "ok"


def test_the_command_node_serves_emergency_stop_and_enable():
    nodes = {"sim_robot": ["sim_robot", "--set", "cameras=false"], "command": ["dual_arm_command"]}
    with NodeProcesses(nodes, {"command": "command_status"}) as graph:
        probe, types = graph.probe, typestore("humble").types
        enables = []
        probe.subscribe(CHANNELS["enable"], lambda msg: enables.append(msg.data))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and graph.latest.get("command", {}).get("reason") != "no action chunk yet":
            graph.check_alive()
            time.sleep(0.1)
        # joint states arrive, no chunks: holding, enabled, not stopped
        assert graph.latest["command"]["enabled"] and not graph.latest["command"]["estopped"]
        stop = probe.client(SERVICES["trigger_emergency_stop"]).call(
            types["std_srvs/srv/Trigger_Request"](structure_needs_at_least_one_member=0), timeout_s=10)
        assert stop.success and "emergency stop" in stop.message
        time.sleep(0.3)  # one status period
        assert graph.latest["command"]["estopped"] and graph.latest["command"]["reason"] == "emergency stop"
        enable = probe.client(SERVICES["set_enabled"]).call(types["std_srvs/srv/SetBool_Request"](data=True),
                                                            timeout_s=10)
        assert (enable.success, enable.message) == (True, "enabled")
        time.sleep(0.3)
        assert graph.latest["command"]["enabled"] and not graph.latest["command"]["estopped"]
        assert enables and enables[-1] is True  # passed on to the policy node on /dbp/enable
