"""One playbook per kind of managed secret; ``base`` holds the port and the common steps."""
