"""Test and bench stand-ins (in-process memory target, sleep check), registered through AEVON_PLUGINS=tests.standins."""

TARGETS = {"memory": "tests.standins.memory:make_target"}
CHECKS = {"sleep": "tests.standins.sleep:make_check"}
