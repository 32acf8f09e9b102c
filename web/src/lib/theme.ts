/* Light / dark: follows the system until the user picks one (kept in localStorage). */
import { signal } from "@preact/signals";

const KEY = "agentd.theme";
const saved = (() => {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
})();
const system = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
export const theme = signal<"light" | "dark">(saved === "dark" || saved === "light" ? saved : system);

function apply() {
  document.documentElement.dataset.theme = theme.value;
}
apply();

export function toggleTheme() {
  theme.value = theme.value === "dark" ? "light" : "dark";
  try {
    localStorage.setItem(KEY, theme.value);
  } catch {
    /* not kept */
  }
  apply();
}
