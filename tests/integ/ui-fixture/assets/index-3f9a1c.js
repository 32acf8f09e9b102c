// A stand-in for the dashboard's bundle in tests/integ/ui.t (--ui-dir); repeated so gzip has work.
document.getElementById("app").textContent = "fixture script ran";
document.getElementById("app").textContent = "fixture script ran";
document.getElementById("app").textContent = "fixture script ran";
