// The console's keyboard: what each key does, as data (the hints on the buttons and the README
// table come from the same list). F-keys and Ctrl+Enter work everywhere, even while typing in
// the form (a call-taker answers without leaving the description); the others only outside a
// text field. Alt+letters are avoided: Chrome takes several of them (chatwoot/chatwoot#15258).
export const SHORTCUTS = [
  { key: "F3", action: "answer" },
  { key: "F4", action: "hangUp" },
  { key: "F6", action: "hold" },
  { key: "F7", action: "mute" },
  { key: "F8", action: "transfer" },
  { key: "F9", action: "ready" },
  { key: "Ctrl+Enter", action: "submit" },
  { key: "Alt+1…9", action: "queueItem" },
  { key: "/", action: "search" },
];

const ANYWHERE = new Set(["F3", "F4", "F6", "F7", "F8", "F9", "Ctrl+Enter"]);

export function isTyping(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  return tag === "textarea" || tag === "select" || target.isContentEditable ||
    (tag === "input" && !["button", "checkbox", "radio", "submit"].includes(target.type));
}

// A keydown event -> {action, index?} or null. Pure: takes the fields it reads.
export function actionOf({ key, ctrlKey, metaKey, altKey, shiftKey, code }, typing) {
  let name = key;
  if ((ctrlKey || metaKey) && key === "Enter") name = "Ctrl+Enter";
  else if (altKey && !ctrlKey && !metaKey && /^Digit[1-9]$/.test(code || "")) {
    name = "Alt+digit";
  } else if (ctrlKey || metaKey || altKey) return null;
  if (typing && !ANYWHERE.has(name)) return null;
  if (name === "Alt+digit") return { action: "queueItem", index: Number(code.slice(5)) - 1 };
  if (shiftKey && name !== "Ctrl+Enter") return null;
  const hit = SHORTCUTS.find((s) => s.key === name);
  return hit ? { action: hit.action } : null;
}
