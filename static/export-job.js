// Export job page: while the file is being prepared, reload its status every few seconds
// (the page works without this; it only saves pressing "Actualizar").
(function () {
  "use strict";
  function refresh() {
    var section = document.getElementById("job-status");
    if (!section || !section.dataset.refresh) return;
    window.setTimeout(function () {
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : Promise.reject(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("job-status");
          if (!fresh) return;
          section.innerHTML = fresh.innerHTML; // the live region stays: screen readers hear it
          if (fresh.dataset.refresh) refresh(); else delete section.dataset.refresh;
        })
        .catch(function () { /* keep the page as it is; the link still works */ });
    }, Number(section.dataset.refresh) * 1000);
  }
  document.addEventListener("DOMContentLoaded", refresh);
})();
