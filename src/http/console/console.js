// Two niceties that need script: copying a new key's value (without
// script it stays selectable in its field), and going on after a single
// sign-on without a click (without script, a button does it).
document.addEventListener("DOMContentLoaded", function () {
  // Back from an identity provider: the response goes on to the console
  // from its own origin, where the sign-in's binding cookie is sent.
  var hop = document.getElementById("sso-continue");
  if (hop) { hop.submit(); return; }
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
