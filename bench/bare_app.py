"""The baseline: a bare Flask JSON endpoint that parses a body and answers JSON."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/echo")
def echo():
    """Parse the JSON body and answer 201, nothing else."""
    body = request.get_json()
    return jsonify({"ok": True, "action": body.get("action")}), 201
