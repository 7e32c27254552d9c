"""The server routes that need no running process: create, read, sync, delete."""

import pytest
from daemon_harness import Client, RunningDaemon, server_config


class TestServerRoutes:
    def test_it_creates_a_server(
        self, client: Client, shared_daemon: RunningDaemon
    ) -> None:
        config = server_config("create1", port=25570)

        response = client.post("/api/servers", json=config)

        # The server is described as PROTOCOL.md says, with its directory and record
        assert response.status_code == 201, response.text
        server = response.json()
        assert server["id"] == "create1"
        assert server["name"] == "Server create1"
        assert server["state"] == "offline"
        assert server["limits"] == {"cpu": 100, "memory_mb": 256, "disk_mb": 64}
        assert server["allocations"] == {
            "default": {"ip": "127.0.0.1", "port": 25570},
            "additional": [],
        }
        assert server["resources"]["memory_limit_bytes"] == 256 * 1024 * 1024
        assert server["resources"]["disk_limit_bytes"] == 64 * 1024 * 1024
        assert server["resources"]["memory_bytes"] == 0
        servers = shared_daemon.data_dir / "servers"
        assert (servers / "create1").is_dir()
        assert (servers / "create1.json").is_file()
        assert client.get("/api/servers/create1").json()["id"] == "create1"

    def test_it_refuses_an_id_that_exists(self, client: Client) -> None:
        client.post("/api/servers", json=server_config("twice1"))

        response = client.post("/api/servers", json=server_config("twice1"))

        assert response.status_code == 409
        assert response.json()["error"] == "conflict"

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"id": "has.dot"}, "id"),
            ({"id": "UPPER"}, "id"),
            ({"limits": {"cpu": 0, "memory_mb": 1, "disk_mb": 1}}, "limits.cpu"),
            (
                {"limits": {"cpu": 1, "memory_mb": "1", "disk_mb": 1}},
                "limits.memory_mb",
            ),
            ({"limits": {"cpu": 1, "memory_mb": 1, "disk_mb": True}}, "limits.disk_mb"),
            ({"allocations": {"additional": []}}, "allocations.default"),
            (
                {"allocations": {"default": {"ip": "127.0.0.1", "port": 70000}}},
                "allocations.default.port",
            ),
            ({"startup": ""}, "startup"),
            ({"startup": "python 'unclosed"}, "startup"),
            ({"environment": {"A": 1}}, "environment.A"),
            ({"environment": ["A"]}, "environment"),
        ],
    )
    def test_it_refuses_an_invalid_config_naming_the_field(
        self, client: Client, change: dict, named: str
    ) -> None:
        response = client.post("/api/servers", json=server_config("bad1") | change)

        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"
        assert response.json()["message"].startswith(named + " ")

    def test_it_syncs_a_new_config(
        self, client: Client, shared_daemon: RunningDaemon
    ) -> None:
        client.post("/api/servers", json=server_config("sync1"))
        config = server_config("sync1", port=25571)
        config["limits"]["memory_mb"] = 512
        config["allocations"]["additional"] = [{"ip": "127.0.0.1", "port": 25572}]
        config["environment"] = {"MOTD": "Synced"}

        response = client.post("/api/servers/sync1/sync", json=config)

        # The new limits and allocations show at once and are on record
        assert response.status_code == 200, response.text
        assert response.json()["limits"]["memory_mb"] == 512
        assert response.json()["allocations"]["additional"] == [
            {"ip": "127.0.0.1", "port": 25572}
        ]
        record = (shared_daemon.data_dir / "servers" / "sync1.json").read_text()
        assert "Synced" in record

    def test_it_refuses_a_sync_of_another_id(self, client: Client) -> None:
        client.post("/api/servers", json=server_config("sync2"))

        response = client.post("/api/servers/sync2/sync", json=server_config("sync3"))

        assert response.status_code == 400

    def test_it_refuses_to_start_a_server_that_is_not_installed(
        self, client: Client
    ) -> None:
        client.post("/api/servers", json=server_config("fresh1"))

        response = client.post("/api/servers/fresh1/power", json={"action": "start"})

        assert response.status_code == 409
        assert "install" in response.json()["message"]

    def test_it_refuses_an_unknown_power_action(self, client: Client) -> None:
        client.post("/api/servers", json=server_config("power1"))

        response = client.post("/api/servers/power1/power", json={"action": "explode"})

        assert response.status_code == 400

    def test_it_refuses_to_stop_or_kill_an_offline_server(self, client: Client) -> None:
        client.post("/api/servers", json=server_config("power2"))

        for action in ("stop", "kill"):
            response = client.post("/api/servers/power2/power", json={"action": action})

            assert response.status_code == 409

    def test_it_deletes_a_server_and_its_files(
        self, client: Client, shared_daemon: RunningDaemon
    ) -> None:
        client.post("/api/servers", json=server_config("gone1"))
        client.post("/api/servers/gone1/files/write?file=a.txt", content=b"a")

        response = client.delete("/api/servers/gone1")

        assert response.status_code == 204
        assert not (shared_daemon.data_dir / "servers" / "gone1").exists()
        assert not (shared_daemon.data_dir / "servers" / "gone1.json").exists()
        assert client.get("/api/servers/gone1").status_code == 404

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/servers/nosuch"),
            ("POST", "/api/servers/nosuch/install"),
            ("POST", "/api/servers/nosuch/sync"),
            ("DELETE", "/api/servers/nosuch"),
            ("GET", "/api/servers/nosuch/ws"),
        ],
    )
    def test_it_answers_404_for_an_unknown_server(
        self, client: Client, method: str, path: str
    ) -> None:
        response = client.request(method, path)

        assert response.status_code == 404
        assert response.json()["error"] == "not_found"

    def test_it_counts_its_servers(self, client: Client) -> None:
        client.post("/api/servers", json=server_config("count1"))

        assert client.get("/api/system").json()["server_count"] >= 1
