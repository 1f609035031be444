"""Every node's files at once (`lvsdr render --all`), pure and reproducible:
node name -> root-relative path -> (bytes, mode). Nothing depends on where
the cluster file lies, the working directory, the time, the umask, the locale
or the environment: the header names the cluster's config_path, the modes are
stated, the paths sorted.
"""

from __future__ import annotations

from lvsdr import defaults

from .artifacts import realserver_files, unit
from .keepalived import Wiring, render_keepalived
from .model import Cluster, Director
from .realserver import desired

Tree = dict[str, tuple[bytes, int]]
AGENT, WATCH = "lvsdr-agent@.service", "lvsdr-watch@.service"
KEEPALIVED_CONF = defaults.KEEPALIVED_CONF.lstrip("/")
DRAIN_DROPIN = "etc/systemd/system/keepalived.service.d/lvsdr-drain.conf"


def director_tree(cluster: Cluster, d: Director) -> Tree:
    conf = render_keepalived(cluster, d.name, cluster.config_path, Wiring.from_cluster(cluster))
    tree: Tree = {
        KEEPALIVED_CONF: (conf.encode(), cluster.file_mode),
        f"etc/systemd/system/{WATCH}": (unit(WATCH, cluster, d.name).encode(), 0o644),
    }
    if cluster.hook in ("fifo", "both"):
        tree[f"etc/systemd/system/{AGENT}"] = (unit(AGENT, cluster, d.name).encode(), 0o644)
    if cluster.bgp is not None:
        from .bird import render_bird

        secret = any(p.password for p in cluster.bgp.peers)
        _place(tree, cluster.bgp.bird_conf.lstrip("/"), (render_bird(cluster, d.name, cluster.config_path).encode(),
                                                         0o640 if secret else 0o644), "bgp.bird_conf")
        dropin = (unit("keepalived-ecmp-drain.conf", cluster).replace("@NODE@", d.name)
                  .replace("@STOP_TIMEOUT@", str(cluster.bgp.drain_timeout + 30)))
        tree[DRAIN_DROPIN] = (dropin.encode(), 0o644)
    return tree


def node_trees(cluster: Cluster, cluster_file: bytes) -> dict[str, Tree]:
    """Each node's files: directors get keepalived.conf and the agent and
    watch units, real servers their ARP suppression files and boot unit;
    every node gets the cluster file at its config_path (which must not
    collide with any other file of the tree: ``InputError``)."""
    out: dict[str, Tree] = {}
    for d in cluster.directors:
        out[d.name] = director_tree(cluster, d)
    for r in cluster.real_servers:
        files = realserver_files(cluster, desired(cluster, r.name), cluster.config_path)
        docs = f"usr/share/doc/lvsdr-{r.name}/"  # the README: what the node gets, how to install it
        out[r.name] = {(docs + path if path == "README.txt" else path): (text.encode(), mode)
                       for path, (text, mode) in files.items()}
    config = cluster.config_path.lstrip("/")
    for tree in out.values():
        _place(tree, config, (cluster_file, cluster.file_mode))
    return {node: dict(sorted(tree.items())) for node, tree in sorted(out.items())}


def _place(tree: Tree, path: str, entry: tuple[bytes, int], key: str = "cluster.config_path") -> None:
    """Add a file the cluster file places (``key`` names the setting) at
    ``path``: not over another file of the tree, nor where one of them needs
    a directory, nor inside one of them."""
    from lvsdr.errors import InputError

    for other in tree:
        if other == path or other.startswith(path + "/") or path.startswith(other + "/"):
            raise InputError(f"{key}: /{path} collides with /{other}, a file lvsdr renders for a node")
    tree[path] = entry
