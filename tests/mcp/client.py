"""An unmodified MCP agent: the official MCP Python SDK's client over
streamable HTTP, reaching its server through HTTPS_PROXY and trusting the
CA in SSL_CERT_FILE, as airlock's README tells agents to run.

Usage: client.py URL auto|legacy
Reads one JSON command per line on stdin and answers each with one JSON
line on stdout:
  {"op": "list"}                                   -> {"tools": [...]}
  {"op": "call", "tool": T, "args": {...},
   "progress": bool, "timeout": seconds}           -> {"isError", "text", "progress": [...], "ms"}
  {"op": "close"}                                  -> {"closed": true}, then exits
"""
import asyncio
import json
import sys
import time

from mcp import Client


def say(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def main():
    url, mode = sys.argv[1], sys.argv[2]
    async with Client(url, mode=mode) as client:
        say({"connected": True, "protocol": client.protocol_version})
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            cmd = json.loads(line)
            try:
                if cmd["op"] == "list":
                    tools = await client.list_tools()
                    say({"tools": sorted(t.name for t in tools.tools)})
                elif cmd["op"] == "call":
                    started = time.monotonic()
                    heard = []

                    async def on_progress(progress, total, message):
                        heard.append({"progress": progress, "message": message,
                                      "ms": round((time.monotonic() - started) * 1000)})

                    result = await client.call_tool(
                        cmd["tool"], cmd.get("args", {}),
                        read_timeout_seconds=cmd.get("timeout", 60),
                        progress_callback=on_progress if cmd.get("progress") else None)
                    say({"isError": result.is_error,
                         "text": "\n".join(c.text for c in result.content if c.type == "text"),
                         "progress": heard,
                         "ms": round((time.monotonic() - started) * 1000)})
                elif cmd["op"] == "close":
                    break
            except Exception as e:  # the test reads what went wrong
                say({"exception": f"{type(e).__name__}: {e}"})
    say({"closed": True})


asyncio.run(main())
