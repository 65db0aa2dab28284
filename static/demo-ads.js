// Demo advertising tag: runs only once "advertising" is granted, and sets its cookie.
document.cookie = "_ads=demo; path=/; max-age=31536000";
document.getElementById("advertising-status").textContent = "running (advertising granted)";
