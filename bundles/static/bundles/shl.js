/* Opens a SMART Health Link in this browser: reads #shlink:/ from the fragment, asks the manifest, decrypts each
   file (JWE dir + A256GCM) with WebCrypto. The key stays in this page: the fragment is never sent anywhere. */
(function () {
  "use strict";
  var form = document.getElementById("shl-open");
  if (!form) { return; }
  var statusEl = document.getElementById("shl-status");
  var button = document.getElementById("shl-button");
  var shl = null;

  function say(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error-text" : "hint";
  }

  function Problem(message) { this.message = message; }

  function unb64u(text) {
    var s = String(text).replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }

  function concat(a, b) {
    var out = new Uint8Array(a.length + b.length);
    out.set(a, 0); out.set(b, a.length);
    return out;
  }

  function parseLink() {
    var hash = window.location.hash || "";
    var at = hash.indexOf("shlink:/");
    if (at < 0) { throw new Problem("This page opens SMART Health Links: its address must end with #shlink:/…"); }
    var payload;
    try {
      payload = JSON.parse(new TextDecoder().decode(unb64u(hash.slice(at + "shlink:/".length))));
    } catch (e) {
      throw new Problem("This SMART Health Link is damaged. Ask for it again.");
    }
    if (!payload || typeof payload.url !== "string" || typeof payload.key !== "string" || payload.key.length !== 43) {
      throw new Problem("This SMART Health Link is damaged. Ask for it again.");
    }
    return payload;
  }

  async function inflate(bytes) {
    if (typeof DecompressionStream === "undefined") { throw new Problem("This browser cannot open compressed files."); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function decrypt(compact, keyText) {
    var parts = String(compact).trim().split(".");
    if (parts.length !== 5) { throw new Problem("A shared file is damaged."); }
    var header = JSON.parse(new TextDecoder().decode(unb64u(parts[0])));
    if (header.alg !== "dir" || header.enc !== "A256GCM") {
      throw new Problem("A shared file uses an encryption this page does not support.");
    }
    var key = await crypto.subtle.importKey("raw", unb64u(keyText), {name: "AES-GCM"}, false, ["decrypt"]);
    var plain;
    try {
      plain = new Uint8Array(await crypto.subtle.decrypt({name: "AES-GCM", iv: unb64u(parts[2]),
        additionalData: new TextEncoder().encode(parts[0]), tagLength: 128}, key,
        concat(unb64u(parts[3]), unb64u(parts[4]))));
    } catch (e) {
      throw new Problem("A shared file could not be decrypted: the link may be incomplete or the file altered.");
    }
    if (header.zip === "DEF") { plain = await inflate(plain); }
    return {header: header, text: new TextDecoder().decode(plain)};
  }

  async function manifest(recipient, passcode) {
    var body = {recipient: recipient};
    if (passcode) { body.passcode = passcode; }
    var resp = await fetch(shl.url, {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body), credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer"});
    var answer = {};
    try { answer = await resp.json(); } catch (e) { answer = {}; }
    if (resp.status === 401) {
      var left = answer.remainingAttempts;
      throw new Problem(left === 0 ? "The passcode is not correct, and the link no longer works." :
        "The passcode is not correct." + (typeof left === "number" ? " Attempts left: " + left + "." : ""));
    }
    if (resp.status === 404) { throw new Problem("This link no longer works: it expired or was revoked."); }
    if (resp.status === 429) { throw new Problem("Too many attempts. Wait a while, then try again."); }
    if (!resp.ok || !Array.isArray(answer.files)) { throw new Problem("The records could not be fetched. Try again later."); }
    return answer.files;
  }

  async function fileText(file) {
    if (typeof file.embedded === "string") { return file.embedded; }
    var resp = await fetch(file.location, {credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer"});
    if (!resp.ok) { throw new Problem("A shared file could not be fetched. Open the link again."); }
    return resp.text();
  }

  async function direct(recipient) {
    var sep = shl.url.indexOf("?") < 0 ? "?" : "&";
    var resp = await fetch(shl.url + sep + "recipient=" + encodeURIComponent(recipient),
      {credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer"});
    if (!resp.ok) { throw new Problem("This link no longer works: it expired or was revoked."); }
    return [{contentType: "application/fhir+json", embedded: await resp.text()}];
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function concept(v) {
    if (!v) { return ""; }
    if (typeof v === "string") { return v; }
    if (Array.isArray(v)) { return v.map(concept).filter(Boolean).join(", "); }
    if (v.text) { return v.text; }
    var c = (v.coding || []).filter(function (x) { return x.display || x.code; })[0];
    return c ? (c.display || c.code) : (v.display || "");
  }

  function nameOf(r) {
    if (typeof r.name === "string") { return r.name; }
    var n = (r.name || [])[0];
    if (!n) { return ""; }
    return n.text || [].concat(n.given || [], [n.family || ""]).join(" ").trim();
  }

  var GROUPS = {Observation: "Observations", DiagnosticReport: "Reports", DocumentReference: "Documents",
    Communication: "Messages", Condition: "Conditions", MedicationRequest: "Medications",
    MedicationStatement: "Medications", AllergyIntolerance: "Allergies", Immunization: "Immunizations",
    Procedure: "Procedures", Encounter: "Encounters"};

  function groupOf(r) {
    if (r.resourceType === "Observation") {
      var cats = [].concat.apply([], (r.category || []).map(function (c) {
        return (c.coding || []).map(function (x) { return x.code; }); }));
      if (cats.indexOf("laboratory") >= 0) { return "Labs"; }
      if (cats.indexOf("vital-signs") >= 0) { return "Vital signs"; }
    }
    return GROUPS[r.resourceType] || "Other";
  }

  function dateOf(r) {
    var start = function (p) { return p && p.start; };
    return String(r.effectiveDateTime || start(r.effectivePeriod) || r.issued || r.occurrenceDateTime ||
      r.performedDateTime || start(r.performedPeriod) || r.onsetDateTime || r.recordedDate || r.authoredOn ||
      start(r.period) || r.date || r.sent || "").slice(0, 10);
  }

  function whatOf(r) {
    if (["Organization", "Practitioner", "RelatedPerson", "Location"].indexOf(r.resourceType) >= 0) {
      return nameOf(r) || r.resourceType;
    }
    if (r.resourceType === "DocumentReference") {
      var att = ((r.content || [])[0] || {}).attachment || {};
      if (att.title) { return att.title; }
    }
    var keys = ["code", "vaccineCode", "medicationCodeableConcept", "type", "category", "class", "description"];
    for (var i = 0; i < keys.length; i++) { var t = concept(r[keys[i]]); if (t) { return t; } }
    return r.resourceType || "";
  }

  function detailOf(r) {
    var q = r.valueQuantity;
    if (q && q.value !== undefined) { return q.value + " " + (q.unit || q.code || ""); }
    if (r.valueString) { return r.valueString; }
    if (r.valueCodeableConcept) { return concept(r.valueCodeableConcept); }
    if (r.resourceType === "Communication") {
      return (r.payload || []).map(function (p) { return p.contentString || ""; }).join(" ");
    }
    return concept(r.clinicalStatus) || r.status || "";
  }

  function renderBundle(box, bundle) {
    var resources = (bundle.entry || []).map(function (e) { return e.resource || {}; });
    var patient = resources.filter(function (r) { return r.resourceType === "Patient"; })[0] || {};
    var facts = el("dl", null, "facts");
    [["Patient", nameOf(patient)], ["Date of birth", patient.birthDate], ["Records", resources.length + " resources"]]
      .forEach(function (f) {
        if (!f[1]) { return; }
        var row = el("div"); row.appendChild(el("dt", f[0])); row.appendChild(el("dd", f[1])); facts.appendChild(row);
      });
    box.appendChild(facts);
    var groups = {};
    resources.forEach(function (r) {
      if (r.resourceType === "Patient") { return; }
      var g = groupOf(r);
      (groups[g] = groups[g] || []).push(r);
    });
    Object.keys(groups).sort().forEach(function (g) {
      var rows = groups[g].sort(function (a, b) { return dateOf(b).localeCompare(dateOf(a)); });
      var sec = el("section", null, "kind");
      sec.appendChild(el("h3", g + " (" + rows.length + ")"));
      var table = el("table"), head = el("tr"), thead = el("thead"), tbody = el("tbody");
      ["Date", "What", "Details"].forEach(function (h) { var th = el("th", h); th.scope = "col"; head.appendChild(th); });
      thead.appendChild(head); table.appendChild(thead);
      rows.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", dateOf(r) || "—")); tr.appendChild(el("td", whatOf(r))); tr.appendChild(el("td", detailOf(r)));
        tbody.appendChild(tr);
      });
      table.appendChild(tbody); sec.appendChild(table); box.appendChild(sec);
    });
  }

  async function open(recipient, passcode) {
    var files = shl.flag.indexOf("U") >= 0 ? await direct(recipient) : await manifest(recipient, passcode);
    var box = document.getElementById("summary");
    box.textContent = "";
    var texts = [];
    for (var i = 0; i < files.length; i++) {
      var opened = await decrypt(await fileText(files[i]), shl.key);
      var type = String(files[i].contentType || opened.header.cty || "");
      if (type.indexOf("application/fhir+json") === 0) {
        renderBundle(box, JSON.parse(opened.text));
        texts.push(opened.text);
      } else {
        box.appendChild(el("p", "A shared file of type " + type + " (not shown here).", "hint"));
      }
    }
    if (texts.length) {
      var link = document.getElementById("download-json");
      link.href = URL.createObjectURL(new Blob([texts.length === 1 ? texts[0] : "[" + texts.join(",") + "]"],
        {type: "application/fhir+json"}));
    }
    document.getElementById("decrypted").hidden = false;
  }

  try {
    shl = parseLink();
    shl.flag = typeof shl.flag === "string" ? shl.flag : "";
    var label = document.getElementById("shl-label");
    label.textContent = (shl.label ? "Shared records: \u201c" + shl.label + "\u201d." : "Shared records.") +
      (shl.exp ? " The link works until " + new Date(shl.exp * 1000).toLocaleDateString() + "." : "");
    if (shl.exp && shl.exp * 1000 < Date.now()) { throw new Problem("This link has expired. Ask for a new one."); }
    document.getElementById("shl-passcode-row").hidden = shl.flag.indexOf("P") < 0;
    form.hidden = false;
  } catch (e) {
    say(e instanceof Problem ? e.message : "This link could not be read: " + e, true);
  }

  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var recipient = document.getElementById("shl-recipient").value.trim();
    var passcode = document.getElementById("shl-passcode").value;
    if (!recipient) { say("Enter your name or organization.", true); return; }
    if (shl.flag.indexOf("P") >= 0 && !passcode) { say("Enter the passcode.", true); return; }
    if (!window.crypto || !crypto.subtle) {
      say("This browser cannot decrypt here (the page must be opened over https).", true);
      return;
    }
    button.disabled = true;
    say("Opening…", false);
    try {
      await open(recipient, passcode);
      say("The records are open.", false);
      form.hidden = true;
    } catch (e) {
      say(e instanceof Problem ? e.message : "The records could not be opened: " + e, true);
    } finally {
      button.disabled = false;
    }
  });
}());
