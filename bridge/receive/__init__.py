"""Receiving: the loop that reads UDP datagrams and TCP (SLIP) frames, the sockets and their sender
allowlist, and the counters of what came in and what was dropped.
"""
