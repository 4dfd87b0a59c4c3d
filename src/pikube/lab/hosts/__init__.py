"""The lab's Pi hosts: the Debian root they boot, their apt repositories, SSH, power, and the
process supervisor.
"""
