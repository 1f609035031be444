"""Files to install on a real server (`lvsdr realserver render`): pure, deterministic."""

from __future__ import annotations

from importlib.resources import files as package_files

from lvsdr import __version__

from .changes import WriteRecord
from .methods import method_of
from .methods.base import Files
from .model import Cluster
from .node import Facts
from .realserver import plan
from .spec import Spec
from .templating import render_template

UNIT = "lvsdr-realserver@.service"
HEAL_UNIT = "lvsdr-realserver-watch@.service"  # the resident healer (`lvsdr realserver watch`)


def unit(name: str, cluster: Cluster, node: str | None = None) -> str:
    """A unit of systemd/ with the cluster's paths in place of its placeholders
    (the one place they are filled in: the real servers' and the directors' units).
    With ``node``, a template's [Install] names it ``DefaultInstance``: on that
    node `systemctl enable lvsdr-agent@.service` (and Debian's deb-systemd-helper,
    which the node packages' scripts use) enables the node's own instance."""
    import posixpath

    text = package_files("lvsdr.systemd").joinpath(name).read_text()
    if node is not None and "@." in name:
        text = text.replace("\n[Install]\n", f"\n[Install]\nDefaultInstance={node}\n", 1)
    return (text.replace("@LVSDR@", cluster.lvsdr_path).replace("@CONFIG@", cluster.config_path)
            .replace("@FIFODIR@", posixpath.dirname(cluster.notify_fifo)).replace("@FIFO@", cluster.notify_fifo)
            .replace("@STATE@", cluster.state_dir))


def realserver_files(cluster: Cluster, spec: Spec, source: str) -> Files:
    """Relative path -> (text, mode): the method's files, the boot unit and a README."""
    art = method_of(spec).artifacts(spec)
    out: Files = dict(art.files)
    out[f"etc/systemd/system/{UNIT}"] = (unit(UNIT, cluster, spec.node), 0o644)
    out[f"etc/systemd/system/{HEAL_UNIT}"] = (unit(HEAL_UNIT, cluster, spec.node), 0o644)
    steps = [c.description for c in plan(spec, Facts()) if not isinstance(c, WriteRecord)]
    readme = render_template(
        "realserver/README.txt.j2", spec=spec, version=__version__, source=source,
        steps=steps, files=sorted(out), notes=list(art.notes), config_path=cluster.config_path,
        lvsdr_path=cluster.lvsdr_path)
    out["README.txt"] = (readme, 0o644)
    return out
