document.getElementById("analytics-status").textContent = "running (analytics granted)";
