from firmware import UnitSim


def test_unit_cycle_against_real_uwsgi(server, tmp_path):
    unit = UnitSim("co2unit-30aea42a50bc", tmp_path / "sd", server.port)
    unit.write_sd("data/readings", "readings-0000.tsv", b"line one\n" * 1000)
    assert unit.cycle() == "ok"
    stored = server.data_dir / unit.hw_id / "data/readings/readings-0000.tsv"
    assert stored.read_bytes() == b"line one\n" * 1000
