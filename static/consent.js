/* Placeholder until the widget lands: shows that the script loaded. */
(function () {
  var s = document.currentScript;
  window.Consent = { get: function () { return null; }, site: s && s.getAttribute("data-site") };
})();
