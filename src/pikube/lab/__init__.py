"""The lab: the seed's LAN as network namespaces on one Linux machine, and its stand-ins.

Lab infrastructure only; nothing here is deployed to a real cluster.
"""
