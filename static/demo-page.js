// The demo page's own script (not tagged): shows what the widget decided and stored.
(function () {
  function show() {
    var got = window.Consent && window.Consent.get();
    document.getElementById("consent-state").textContent =
      got ? JSON.stringify(got, null, 2) : "null (no choice yet)";
    document.getElementById("cookies").textContent = document.cookie.split("; ").join("\n") || "(none)";
    var modes = (window.dataLayer || []).filter(function (e) { return e[0] === "consent"; });
    document.getElementById("consent-mode").textContent = modes.map(function (e) {
      var granted = Object.keys(e[2]).filter(function (k) { return e[2][k] === "granted"; });
      return e[1] + ": granted " + (granted.join(", ") || "nothing");
    }).join("\n");
  }
  ["consent:change", "consent:recorded", "load"].forEach(function (name) {
    window.addEventListener(name, function () { setTimeout(show, 100); });
  });
  document.addEventListener("DOMContentLoaded", function () { setTimeout(show, 50); });
})();
