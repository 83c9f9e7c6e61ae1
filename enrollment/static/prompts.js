// What to tell the person in front of the camera, from one /v1/capture/analyze answer.
//
// The answer: {roi_status, reason, quality: {sharpness, brightness, palm_fraction, problems}|null,
// handedness}. roi_status is one of ok | no_hand | multiple_hands | bad_pose | palm_too_small |
// invalid_image; quality.problems lists failed gates: blurred, too_dark, too_bright,
// palm_too_small. A frame is good when the ROI is ok and no quality gate failed.

export const PROMPTS = Object.freeze({
  show: "Show your palm to the camera",
  closer: "Move closer",
  spread: "Spread your fingers",
  flat: "Hold your hand flat, facing the camera",
  still: "Hold still",
  dark: "Too dark — find more light",
  bright: "Too bright",
  back: "Show your palm, not the back of your hand",
  one: "One hand at a time",
  good: "Hold still",
  sameHand: "Keep the same hand over the camera",
  otherHand: "Now show your other hand",
});

/** True when the frame can be used (ROI found, every quality gate passed). */
export function isGood(result) {
  return Boolean(result && result.roi_status === "ok" && result.quality &&
    Array.isArray(result.quality.problems) && result.quality.problems.length === 0);
}

/** Plain prompt for one analyze result. */
export function promptFor(result) {
  if (!result) return PROMPTS.show;
  const reason = String(result.reason || "").toLowerCase();
  switch (result.roi_status) {
    case "no_hand":
    case "invalid_image":
      return PROMPTS.show;
    case "multiple_hands":
      return PROMPTS.one;
    case "palm_too_small":
      return PROMPTS.closer;
    case "bad_pose":
      if (reason.includes("back of the hand")) return PROMPTS.back;
      if (reason.includes("curled")) return PROMPTS.spread;
      if (reason.includes("tilt") || reason.includes("foreshorten") || reason.includes("flat")) {
        return PROMPTS.flat;
      }
      if (reason.includes("not clearly visible")) return PROMPTS.show;
      return PROMPTS.spread;
    case "ok":
      break;
    default:
      return PROMPTS.show;
  }
  const problems = (result.quality && result.quality.problems) || [];
  // Most actionable first: nothing else can be judged in the dark or when the palm is tiny.
  if (problems.includes("too_dark")) return PROMPTS.dark;
  if (problems.includes("too_bright")) return PROMPTS.bright;
  if (problems.includes("palm_too_small")) return PROMPTS.closer;
  if (problems.includes("blurred")) return PROMPTS.still;
  return PROMPTS.good;
}
