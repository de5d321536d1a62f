// SCEP web UI: the little behaviour htmx does not cover.
// Forms with data-confirm ask before submitting (the kill switch).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
