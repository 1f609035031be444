"""nft without a process, for the resident agent's fast path (replay.py).

libnftables is the library the nft tool itself is built on (Debian's
libnftables1, a dependency of nftables): the same parser, the same atomic
transactions, the same listing. Called in process through ctypes, a role
change's script takes about 0.4 ms and a ruleset listing 0.1 ms here, against
16-20 ms and 3 ms for spawning nft. It pays only in a process that stays:
loading it costs ~6 ms, and a fresh process that used it ends ~15 ms later
(measured with `lvsdr notify`: no faster in wall time than spawning nft), so
notify spawns nft and the agent calls the library. ``run`` returns None when
the library cannot be loaded; the caller then spawns nft.

Standard library only. One context per process and network namespace: the
context's netlink socket belongs to the namespace it was opened in.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs ~6 ms to import; this module is on notify's path (mypy reads it as True)

if TYPE_CHECKING:
    from typing import Any

LIBRARY = "libnftables.so.1"
OUTPUT_STATELESS = 1 << 2  # NFT_CTX_OUTPUT_STATELESS: no counters or quota values, as `nft -s` prints

_lib: Any = None
_ctx: dict[int, Any] = {}  # network namespace inode -> context


def _load() -> Any:
    global _lib
    if _lib is None:
        import ctypes

        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError:
            _lib = False
            return False
        p, s = ctypes.c_void_p, ctypes.c_char_p
        for name, res, args in (("nft_ctx_new", p, [ctypes.c_uint32]),
                                ("nft_ctx_buffer_output", ctypes.c_int, [p]),
                                ("nft_ctx_buffer_error", ctypes.c_int, [p]),
                                ("nft_ctx_output_set_flags", None, [p, ctypes.c_uint]),
                                ("nft_ctx_get_output_buffer", s, [p]),
                                ("nft_ctx_get_error_buffer", s, [p]),
                                ("nft_run_cmd_from_buffer", ctypes.c_int, [p, s])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _lib = lib
    return _lib


def _context(lib: Any) -> Any:
    """This namespace's context; None when libnftables cannot make one."""
    netns = os.stat("/proc/self/ns/net").st_ino
    ctx = _ctx.get(netns)
    if ctx is None:
        ctx = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not ctx or lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
            return None
        lib.nft_ctx_output_set_flags(ctx, OUTPUT_STATELESS)
        _ctx[netns] = ctx
    return ctx


def run(script: str) -> tuple[int, str] | None:
    """(exit code, output then errors) of an nft script, as `nft -s -f -`
    gives them; None when libnftables is not available."""
    lib = _load()
    if not lib:
        return None
    ctx = _context(lib)
    if ctx is None:
        return None
    code = lib.nft_run_cmd_from_buffer(ctx, script.encode())
    # reading a buffer also empties it for the next command
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    return (1 if code else 0), out + err
