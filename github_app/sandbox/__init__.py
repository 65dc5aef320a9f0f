"""A stateful stand-in for the parts of GitHub's REST API that gonogo uses, served over real HTTP."""

from github_app.sandbox.app import create_sandbox_app
from github_app.sandbox.auth import generate_key_pair, make_app_jwt
from github_app.sandbox.server import RunningSandbox, async_running_sandbox, running_sandbox
from github_app.sandbox.state import Call, Fault, FileChange, SandboxState

__all__ = [
    "Call", "Fault", "FileChange", "RunningSandbox", "SandboxState", "async_running_sandbox", "create_sandbox_app",
    "generate_key_pair", "make_app_jwt", "running_sandbox",
]
