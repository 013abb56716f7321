"""Test and bench stand-ins (memory target, its file-backed twin, sleep check); AEVON_PLUGINS=tests.standins."""

TARGETS = {"memory": "tests.standins.memory:make_target", "memory-file": "tests.standins.filed:make_target"}
CHECKS = {"sleep": "tests.standins.sleep:make_check"}
