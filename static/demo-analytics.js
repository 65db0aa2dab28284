// Demo analytics tag: runs only once "analytics" is granted, and sets its cookies.
document.cookie = "_da_visit=" + Date.now() + "; path=/; max-age=31536000";
document.cookie = "_da_pages=1; path=/; max-age=31536000";
document.getElementById("analytics-status").textContent = "running (analytics granted)";
