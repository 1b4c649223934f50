/* Decrypts a Send Record JWE (PBES2-HS512+A256KW, A256GCM) in this browser with WebCrypto; the password never leaves it. */
(function () {
  "use strict";
  var form = document.getElementById("unlock");
  if (!form) { return; }
  var statusEl = document.getElementById("unlock-status");
  var button = document.getElementById("unlock-button");
  var jwe = null;

  function say(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error-text" : "hint";
  }

  function unb64u(text) {
    var s = text.replace(/-/g, "+").replace(/_/g, "/");
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

  function Problem(message) { this.message = message; }

  async function fetchJwe() {
    if (jwe) { return jwe; }
    var resp = await fetch(form.getAttribute("data-record-url"), {
      headers: {"Accept": "application/jose"}, credentials: "omit", cache: "no-store"});
    var body = (await resp.text()).trim();
    if (!resp.ok) { throw new Problem(body || "The record could not be fetched. Try again later."); }
    jwe = body;
    return jwe;
  }

  async function decrypt(compact, password) {
    var parts = compact.split(".");
    if (parts.length !== 5) { throw new Problem("The record is damaged."); }
    var header = JSON.parse(new TextDecoder().decode(unb64u(parts[0])));
    if (header.alg !== "PBES2-HS512+A256KW" || header.enc !== "A256GCM") {
      throw new Problem("This record uses an encryption this page does not support.");
    }
    if (!(header.p2c >= 1000 && header.p2c <= 10000000)) { throw new Problem("The record is damaged."); }
    var enc = new TextEncoder();
    var salt = concat(concat(enc.encode(header.alg), new Uint8Array([0])), unb64u(header.p2s));
    var base = await crypto.subtle.importKey("raw", enc.encode(password), "PBKDF2", false, ["deriveKey"]);
    var kek = await crypto.subtle.deriveKey({name: "PBKDF2", hash: "SHA-512", salt: salt, iterations: header.p2c},
      base, {name: "AES-KW", length: 256}, false, ["unwrapKey"]);
    var cek;
    try {
      cek = await crypto.subtle.unwrapKey("raw", unb64u(parts[1]), kek, "AES-KW", {name: "AES-GCM", length: 256},
        false, ["decrypt"]);
    } catch (e) {
      throw new Problem("The password is not correct. Check it with the person who sent the record and try again.");
    }
    var plain;
    try {
      plain = await crypto.subtle.decrypt({name: "AES-GCM", iv: unb64u(parts[2]), additionalData: enc.encode(parts[0]),
        tagLength: 128}, cek, concat(unb64u(parts[3]), unb64u(parts[4])));
    } catch (e) {
      throw new Problem("The record could not be decrypted: it may have been altered.");
    }
    return new Uint8Array(plain);
  }

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function conceptText(v) {
    if (!v) { return ""; }
    if (typeof v === "string") { return v; }
    if (Array.isArray(v)) { return v.map(conceptText).filter(Boolean).join(", "); }
    if (v.text) { return v.text; }
    var c = (v.coding || []).find(function (x) { return x.display || x.code; });
    if (c) { return c.display || c.code; }
    return v.display || v.code || "";
  }

  function personName(r) {
    var n = (r.name || [])[0];
    if (typeof r.name === "string") { return r.name; }
    if (!n) { return ""; }
    return n.text || [].concat(n.prefix || [], n.given || [], [n.family || ""]).join(" ").trim();
  }

  var KINDS = {DiagnosticReport: "Reports", DocumentReference: "Documents", Media: "Documents",
    Communication: "Messages", Condition: "Conditions", MedicationRequest: "Medications",
    MedicationStatement: "Medications", AllergyIntolerance: "Allergies", Immunization: "Immunizations",
    Procedure: "Procedures", Encounter: "Encounters", CarePlan: "Care plans and goals", Goal: "Care plans and goals",
    ImagingStudy: "Imaging", Claim: "Billing and insurance", ExplanationOfBenefit: "Billing and insurance",
    Coverage: "Billing and insurance", Organization: "Care team and practice", Practitioner: "Care team and practice",
    PractitionerRole: "Care team and practice", Location: "Care team and practice",
    RelatedPerson: "Care team and practice", CareTeam: "Care team and practice"};

  function kindOf(r) {
    if (r.resourceType === "Observation") {
      var cats = (r.category || []).flatMap(function (c) { return (c.coding || []).map(function (x) { return x.code; }); });
      if (cats.indexOf("laboratory") >= 0) { return "Labs"; }
      return cats.indexOf("vital-signs") >= 0 ? "Vital signs" : "Other observations";
    }
    return KINDS[r.resourceType] || "Other";
  }

  function dateOf(r) {
    var p = function (o) { return o && o.start; };
    return String(r.effectiveDateTime || p(r.effectivePeriod) || r.issued || r.occurrenceDateTime ||
      r.performedDateTime || p(r.performedPeriod) || r.onsetDateTime || r.recordedDate || r.authoredOn ||
      p(r.period) || r.started || r.date || r.created || r.sent || p(r.billablePeriod) || "").slice(0, 10);
  }

  function titleOf(r) {
    if (["Organization", "Practitioner", "RelatedPerson", "Location"].indexOf(r.resourceType) >= 0) {
      return personName(r) || r.resourceType;
    }
    if (r.resourceType === "DocumentReference") {
      var att = ((r.content || [])[0] || {}).attachment || {};
      if (att.title) { return att.title; }
    }
    var keys = ["code", "vaccineCode", "medicationCodeableConcept", "type", "category", "class", "description", "name"];
    for (var i = 0; i < keys.length; i++) { var t = conceptText(r[keys[i]]); if (t) { return t; } }
    return r.resourceType;
  }

  function detailOf(r) {
    if (r.resourceType === "Observation") {
      var q = r.valueQuantity;
      if (q && q.value !== undefined) { return q.value + " " + (q.unit || q.code || ""); }
      if (r.valueCodeableConcept) { return conceptText(r.valueCodeableConcept); }
      if (r.valueString) { return r.valueString; }
      return (r.component || []).map(function (c) {
        var cq = c.valueQuantity || {};
        return conceptText(c.code) + ": " + (cq.value !== undefined ? cq.value + " " + (cq.unit || "") : conceptText(c.valueCodeableConcept));
      }).join("; ");
    }
    if (r.resourceType === "Communication") {
      return (r.payload || []).map(function (x) { return x.contentString || ""; }).join(" ");
    }
    return conceptText(r.clinicalStatus) || r.status || "";
  }

  function isNotes(r) {
    return r.resourceType === "Communication" && (r.category || []).some(function (c) { return c.text === "Notes for the recipient"; });
  }

  function render(bundle, jsonText) {
    var box = document.getElementById("summary");
    box.textContent = "";
    var resources = (bundle.entry || []).map(function (e) { return e.resource || {}; });
    var patient = resources.find(function (r) { return r.resourceType === "Patient"; }) || {};
    var facts = el("dl", null, "facts");
    [["Patient", personName(patient)], ["Date of birth", patient.birthDate], ["Gender", patient.gender],
     ["Records", String(resources.length) + " resources"]].forEach(function (f) {
      if (!f[1]) { return; }
      var row = el("div"); row.appendChild(el("dt", f[0])); row.appendChild(el("dd", f[1])); facts.appendChild(row);
    });
    box.appendChild(facts);
    resources.filter(isNotes).forEach(function (r) {
      box.appendChild(el("h3", "Notes from the sender"));
      box.appendChild(el("blockquote", detailOf(r), "notes"));
    });
    var groups = {};
    resources.forEach(function (r) {
      if (r.resourceType === "Patient" || isNotes(r)) { return; }
      var k = kindOf(r);
      (groups[k] = groups[k] || []).push(r);
    });
    Object.keys(groups).sort().forEach(function (k) {
      var rows = groups[k].sort(function (a, b) { return dateOf(b).localeCompare(dateOf(a)); });
      var sec = el("section", null, "kind");
      sec.appendChild(el("h3", k + " (" + rows.length + ")"));
      var table = el("table"), head = el("tr");
      ["Date", "What", "Details"].forEach(function (h) { var th = el("th", h); th.scope = "col"; head.appendChild(th); });
      var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
      var tbody = el("tbody");
      rows.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", dateOf(r) || "—")); tr.appendChild(el("td", titleOf(r))); tr.appendChild(el("td", detailOf(r)));
        tbody.appendChild(tr);
      });
      table.appendChild(tbody); sec.appendChild(table); box.appendChild(sec);
    });
    var link = document.getElementById("download-json");
    link.href = URL.createObjectURL(new Blob([jsonText], {type: "application/fhir+json"}));
    var section = document.getElementById("decrypted");
    section.hidden = false;
    document.getElementById("decrypted-h").focus && section.scrollIntoView();
  }

  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var password = document.getElementById("record-password").value;
    if (!password) { say("Enter the password.", true); return; }
    if (!window.crypto || !crypto.subtle) {
      say("This browser cannot decrypt here (the page must be opened over https). Use a JOSE library or carespace decrypt-record.", true);
      return;
    }
    button.disabled = true;
    say("Decrypting…", false);
    try {
      var plain = await decrypt(await fetchJwe(), password);
      var text = new TextDecoder().decode(plain);
      render(JSON.parse(text), text);
      say("The record is open.", false);
      form.hidden = true;
    } catch (e) {
      say(e instanceof Problem ? e.message : "The record could not be opened: " + e, true);
    } finally {
      button.disabled = false;
    }
  });
}());
