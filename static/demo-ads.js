document.getElementById("advertising-status").textContent = "running (advertising granted)";
