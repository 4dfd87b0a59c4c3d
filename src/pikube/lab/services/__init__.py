"""The services the lab's scenarios run: nginx, kube-proxy's rules, keepalived, routers,
pikube's speakers and controller, and the demos' stories.
"""
