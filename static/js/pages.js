// Unibox: keep the newest message in view when the thread loads or refreshes,
// unless the reader has scrolled up to read older ones.
(function () {
  "use strict";
  var pinned = true;

  function scrollThread() {
    var thread = document.getElementById("thread");
    if (thread && pinned) thread.scrollTop = thread.scrollHeight;
  }

  document.addEventListener("scroll", function (event) {
    var thread = event.target;
    if (thread && thread.id === "thread") {
      pinned = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
    }
  }, true);
  document.addEventListener("DOMContentLoaded", scrollThread);
  document.addEventListener("htmx:afterSettle", scrollThread);
  // A sent reply always brings the newest message into view.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.target.matches && event.target.matches(".reply-box form")) pinned = true;
  });
})();
