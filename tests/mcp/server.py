"""An MCP server over streamable HTTP with TLS, made with the official MCP
Python SDK, as an agent's upstream in airlock's tests.

Every tool that acts appends a line to the executions log, so a test can
count what was really performed.

Usage: server.py CERT KEY LOG stateful|stateless
Prints "PORT <n>" once listening on 127.0.0.1.
"""
import asyncio
import json
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

cert, key, log, mode = sys.argv[1:5]

mcp = MCPServer("airlock-test-mail")


def performed(tool, **args):
    with open(log, "a") as f:
        f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@mcp.tool()
def send_email(to: str, subject: str) -> str:
    """Send an email."""
    performed("send_email", to=to, subject=subject)
    return f"sent to {to}: {subject}"


@mcp.tool()
def delete_mailbox(name: str) -> str:
    """Delete a mailbox and everything in it."""
    performed("delete_mailbox", name=name)
    return f"deleted {name}"


@mcp.tool()
def get_inbox() -> str:
    """Read the inbox."""
    return "3 unread"


@mcp.tool()
async def count_slowly(steps: int, ctx: Context) -> str:
    """Counts, reporting progress as it goes."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(0.4)
    return f"counted to {steps}"


security = TransportSecuritySettings(allowed_hosts=["mcp.test:*", "127.0.0.1:*"])
if mode == "stateless":
    app = mcp.streamable_http_app(stateless_http=True, json_response=True, transport_security=security)
else:
    app = mcp.streamable_http_app(transport_security=security)

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(f"PORT {sock.getsockname()[1]}", flush=True)
config = uvicorn.Config(app, ssl_keyfile=key, ssl_certfile=cert, log_level="warning")
asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
