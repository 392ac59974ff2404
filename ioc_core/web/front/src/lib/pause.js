// Why an agent is paused: one list of codes for the console and the board, the words in the
// locales (`pause_reasons.<code>`). A reason typed elsewhere (a desk phone) shows as it is.
import { t } from "./i18n.js";

export const PAUSE_REASONS = ["short_break", "lunch", "meeting", "training", "paperwork", "other"];

export function reasonText(reason) {
  if (!reason) return "";
  const key = `pause_reasons.${reason}`;
  const text = t(key);
  return text === key ? reason : text;
}
