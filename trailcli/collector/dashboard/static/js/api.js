// Reading the dashboard's JSON. A 401 means the session ended: reloading shows the sign-in form.

export class ApiError extends Error {
  constructor(message, hint, status) {
    super(message);
    this.hint = hint || "";
    this.status = status;
  }
}

export async function getJSON(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch (error) {
    throw new ApiError("The collector cannot be reached.", "check that trail collect is running", 0);
  }
  if (response.status === 401) {
    location.reload();
    throw new ApiError("Signed out.", "", 401);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(body.error || response.statusText, body.hint, response.status);
  }
  return body;
}
