// The one nicety that needs script: copying a new key's value. Without
// script the value stays selectable in its field.
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy-key");
  if (!button || !navigator.clipboard) { return; }
  var field = document.getElementById(button.getAttribute("data-copy"));
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () {
      button.textContent = "Copied";
    });
  });
});
