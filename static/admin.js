// Admin forms marked data-warn-unsaved ask before the page is left with changes not saved.
// The admin works without this script; it only adds the warning.
(function () {
  var forms = document.querySelectorAll('form[data-warn-unsaved]');
  var dirty = new Set();
  forms.forEach(function (form) {
    var mark = function () { dirty.add(form); };
    form.addEventListener('input', mark);
    form.addEventListener('change', mark);
    form.addEventListener('submit', function () { dirty.clear(); });
  });
  window.addEventListener('beforeunload', function (event) {
    if (dirty.size) { event.preventDefault(); event.returnValue = ''; }
  });
})();
