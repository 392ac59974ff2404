// What a user typed survives a reload and a sign-in after the session expired: kept in the
// tab's sessionStorage (gone when the tab closes, never shared with another tab or user).
import { useEffect, useState } from "preact/hooks";

export function useDraft(key, initial) {
  const [value, setValue] = useState(() => {
    try {
      const kept = sessionStorage.getItem(`ioc.draft.${key}`);
      return kept ? JSON.parse(kept) : initial;
    } catch {
      return initial;
    }
  });
  useEffect(() => {
    sessionStorage.setItem(`ioc.draft.${key}`, JSON.stringify(value));
  }, [key, value]);
  const clear = () => {
    sessionStorage.removeItem(`ioc.draft.${key}`);
    setValue(initial);
  };
  return [value, setValue, clear];
}
