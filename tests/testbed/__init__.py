"""Real services the tests start themselves: OpenSSH sshd, test users, a remote Python."""
